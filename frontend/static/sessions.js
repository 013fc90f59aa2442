// A logged-in user's sessions page (/sessions): Stop calls DELETE /api/sessions/<id>.

export function startSessionsPage(settings) {
  const error = document.getElementById("stop-error");
  for (const button of document.querySelectorAll("button.stop-session")) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      button.textContent = "Stopping…";
      const response = await fetch(
        `${settings.baseUrl}api/sessions/${encodeURIComponent(button.dataset.session)}`, {
          method: "DELETE", credentials: "same-origin",
          // a login cookie counts on a write only with the page's xsrf token beside it
          headers: { "X-XSRFToken": settings.xsrfToken },
        });
      if (response.ok) {
        button.closest("tr").remove();
        if (!document.querySelector("tr[data-session]")) window.location.reload();
        return;
      }
      let message = `HTTP ${response.status}`;
      try {
        message = (await response.json()).message || message;
      } catch {
        // not JSON: keep the status
      }
      error.textContent = `Could not stop the session: ${message}`;
      error.hidden = false;
      button.disabled = false;
      button.textContent = "Stop";
    });
  }
}
