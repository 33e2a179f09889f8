// entropy.cluster dashboard: the only script besides htmx (no inline script: the CSP forbids it).
// An error answer (403 refused, 502 failed action) is shown in its target like a success, not dropped.
document.addEventListener("htmx:beforeSwap", function (evt) {
  if (evt.detail.xhr.status >= 400 && evt.detail.xhr.status < 600) {
    evt.detail.shouldSwap = true;
    evt.detail.isError = false;
  }
});

// Drag a VM block onto another hypervisor's column to migrate it: a confirmation, then the same POST as the Migrate
// button (/vm/NAME/migrate with the destination and the session's CSRF token); the server checks the role again.
// Only an operator's page has draggable blocks (running or paused VMs).
(function () {
  var dragged = null;
  function hostOf(evt) {
    var host = evt.target && evt.target.closest ? evt.target.closest("#map .host") : null;
    if (!host || host.classList.contains("unreachable") || !dragged || host.getAttribute("data-host") === dragged.from) {
      return null;
    }
    return host;
  }
  function clearTargets() {
    document.querySelectorAll(".drop-target").forEach(function (e) { e.classList.remove("drop-target"); });
  }
  document.addEventListener("dragstart", function (evt) {
    var vm = evt.target && evt.target.closest ? evt.target.closest("#map .vm[draggable=true]") : null;
    if (!vm) { return; }
    dragged = {vm: vm.getAttribute("data-vm"), from: vm.closest(".host").getAttribute("data-host")};
    evt.dataTransfer.setData("text/plain", dragged.vm);
    evt.dataTransfer.effectAllowed = "move";
  });
  document.addEventListener("dragover", function (evt) {
    var host = hostOf(evt);
    if (!host) { return; }
    evt.preventDefault();
    clearTargets();
    host.classList.add("drop-target");
  });
  document.addEventListener("dragend", function () { dragged = null; clearTargets(); });
  document.addEventListener("drop", function (evt) {
    var host = hostOf(evt);
    if (!host) { return; }
    evt.preventDefault();
    clearTargets();
    var name = dragged.vm, to = host.getAttribute("data-host");
    dragged = null;
    if (!window.confirm("Migrate " + name + " to " + to + "?")) { return; }
    var token = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRF-Token"];
    var panel = document.getElementById("panel");
    var note = document.createElement("p");
    note.className = "hint";
    note.textContent = "migrating " + name + " to " + to + "\u2026";  // text, never HTML: the names are tenant data
    panel.replaceChildren(note);
    htmx.ajax("POST", "/vm/" + encodeURIComponent(name) + "/migrate",
              {target: "#panel", swap: "innerHTML", values: {destination: to, csrf_token: token}});
  });
}());
