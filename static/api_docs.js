// The API docs page (templates/api_docs.html): Swagger UI on the OpenAPI document named by
// #swagger-ui[data-spec-url]. Started here, not inline, because the CSP forbids inline scripts.
// - validatorUrl null: no badge image from validator.swagger.io (the CSP allows only 'self').
// - persistAuthorization false: a pasted key lives in this tab's memory, never in localStorage.
// - credentials "omit": "Try it out" authenticates with the pasted key only, never the session.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  if (!root || typeof window.SwaggerUIBundle !== "function") return;
  window.SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    domNode: root,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    validatorUrl: null,
    persistAuthorization: false,
    displayRequestDuration: true,
    defaultModelsExpandDepth: 0,
    requestInterceptor: function (request) {
      request.credentials = "omit";
      return request;
    },
    onComplete: function () {
      root.removeAttribute("aria-busy");
    },
  });
})();
