// Starts Swagger UI on the gateway's own OpenAPI document, whose URL the page gives in
// data-spec-url. A file of the gateway's: the docs' Content-Security-Policy allows no
// inline script.
window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null, // the default badge asks validator.swagger.io: no other host, ever
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
