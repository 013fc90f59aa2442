// Favicons that show a launch's state in the browser tab: a ring filling up while it works,
// amber while queued, a green check when ready, a red cross when it failed. Drawn as SVG.

const COLORS = { working: "#1f6feb", waiting: "#c98a00", ready: "#1a7f37", failed: "#cf222e" };

/** The SVG for `state` ("working" | "waiting" | "ready" | "failed"), `fraction` in 0..1. */
export function faviconSvg(state, fraction = 0) {
  const color = COLORS[state] || COLORS.working;
  const open = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">';
  if (state === "ready") {
    return `${open}<circle cx="16" cy="16" r="15" fill="${color}"/>` +
      '<path d="M9 16.5l4.5 4.5L23 11.5" fill="none" stroke="#fff" stroke-width="3.5" ' +
      'stroke-linecap="round" stroke-linejoin="round"/></svg>';
  }
  if (state === "failed") {
    return `${open}<circle cx="16" cy="16" r="15" fill="${color}"/>` +
      '<path d="M11 11l10 10M21 11L11 21" stroke="#fff" stroke-width="3.5" ' +
      'stroke-linecap="round"/></svg>';
  }
  // a ring: grey track, coloured arc for the share done (circumference of r=12: 75.4)
  const done = Math.max(0.04, Math.min(1, fraction)) * 75.4;
  const centre = state === "waiting"
    ? `<rect x="12" y="11" width="3" height="10" rx="1" fill="${color}"/>` +
      `<rect x="17" y="11" width="3" height="10" rx="1" fill="${color}"/>`
    : `<circle cx="16" cy="16" r="4" fill="${color}"/>`;
  return `${open}<circle cx="16" cy="16" r="12" fill="none" stroke="#d0d7de" stroke-width="6"/>` +
    `<circle cx="16" cy="16" r="12" fill="none" stroke="${color}" stroke-width="6" ` +
    `stroke-dasharray="${done.toFixed(1)} 75.4" transform="rotate(-90 16 16)"/>${centre}</svg>`;
}

export const faviconUrl = (state, fraction) =>
  `data:image/svg+xml,${encodeURIComponent(faviconSvg(state, fraction))}`;

/** Point the page's <link rel="icon"> at the state's icon (creating the link if needed). */
export function setFavicon(state, fraction) {
  let link = document.querySelector('link[rel="icon"]');
  if (!link) {
    link = document.createElement("link");
    link.rel = "icon";
    document.head.append(link);
  }
  link.type = "image/svg+xml";
  link.href = faviconUrl(state, fraction);
  link.dataset.state = state;
}
