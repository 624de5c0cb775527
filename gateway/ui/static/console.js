// The driftgate console's only script of its own (the Content-Security-Policy allows no
// inline script). It shows what the gateway answered when an htmx request failed: the
// gateway's errors are {"error": "..."}, saying what to fix.
(() => {
  const banner = () => document.getElementById("console-error");

  function show(text) {
    const element = banner();
    if (element) {
      element.textContent = text;
      element.hidden = false;
    }
  }

  document.addEventListener("htmx:responseError", (event) => {
    const request = event.detail.xhr;
    let text = `the gateway answered ${request.status}`;
    try {
      const body = JSON.parse(request.responseText);
      if (body && typeof body.error === "string") {
        text = `${request.status}: ${body.error}`;
      }
    } catch (_) {
      // not JSON: keep the status alone
    }
    show(text);
  });

  document.addEventListener("htmx:sendError", () => {
    show("the gateway does not answer; the page shows what it last knew");
  });

  document.addEventListener("htmx:afterRequest", (event) => {
    const element = banner();
    // A successful action, or the page's poll answering again, clears an old error.
    if (element && event.detail.successful && !element.hidden) {
      const method = (event.detail.requestConfig && event.detail.requestConfig.verb) || "get";
      if (method !== "get" || element.textContent.startsWith("the gateway does not answer")) {
        element.hidden = true;
      }
    }
  });
})();
