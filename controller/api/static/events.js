// The console's events page: the API's event stream (through /console/events/stream, which
// authenticates by the session cookie), one list item per event, newest first.
"use strict";
(function () {
  const list = document.getElementById("events");
  const state = document.getElementById("events-state");
  const source = new EventSource("/console/events/stream");
  const kinds = ["submitted", "spec", "decision", "status", "deleted", "missed"];
  source.onopen = function () { state.textContent = "Connected: new events appear below."; };
  source.onerror = function () { state.textContent = "Disconnected: reconnecting…"; };
  kinds.forEach(function (kind) {
    source.addEventListener(kind, function (event) {
      const item = document.createElement("li");
      const name = document.createElement("strong");
      name.textContent = kind;
      const body = document.createElement("code");
      body.textContent = event.data;  // text, never HTML: nothing from the stream is parsed as markup
      item.append(name, " ", body);
      item.dataset.kind = kind;
      list.prepend(item);
    });
  });
})();
