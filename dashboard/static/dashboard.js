// entropy.cluster dashboard: the only script besides htmx (no inline script: the CSP forbids it).
// An error answer (403 refused, 502 failed action) is shown in its target like a success, not dropped.
document.addEventListener("htmx:beforeSwap", function (evt) {
  if (evt.detail.xhr.status >= 400 && evt.detail.xhr.status < 600) {
    evt.detail.shouldSwap = true;
    evt.detail.isError = false;
  }
});
