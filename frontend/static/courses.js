// The instructor's course list (/courses): register a course through /api/courses.

const lines = (text) => text.split("\n").map((l) => l.trim()).filter(Boolean);

export function startCourseForm(settings) {
  const form = document.getElementById("course-form");
  const error = document.getElementById("form-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = {
      id: data.get("id").trim(), title: data.get("title").trim(),
      patterns: lines(data.get("patterns")), seats: Number(data.get("seats")),
      windows: lines(data.get("windows")), timezone: data.get("timezone").trim() || "UTC",
    };
    const headers = { "Content-Type": "application/json" };
    // a login cookie counts on a write only with the page's xsrf token beside it
    if (settings.xsrfToken) headers["X-XSRFToken"] = settings.xsrfToken;
    const response = await fetch(`${settings.baseUrl}api/courses`, {
      method: "POST", headers, body: JSON.stringify(body), credentials: "same-origin",
    });
    if (response.status === 201) {
      window.location.assign(`${settings.baseUrl}courses/${body.id}`);
      return;
    }
    let message = `HTTP ${response.status}`;
    try {
      message = (await response.json()).message || message;
    } catch {
      // not JSON: keep the status
    }
    error.textContent = message;
    error.hidden = false;
  });
}
