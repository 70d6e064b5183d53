// The live conversation (/console/live/<id>): new transcript lines arrive by Server-Sent
// Events and are appended without a reload; messages are sent with fetch and the page's
// CSRF token. Without JavaScript the forms post normally. The list (/console/live)
// refreshes itself every few seconds.
(function () {
  "use strict";

  var list = document.querySelector(".live-list[data-refresh]");
  if (list) {
    var seconds = parseInt(list.getAttribute("data-refresh"), 10) || 10;
    window.setTimeout(function () { window.location.reload(); }, seconds * 1000);
    return;
  }

  var root = document.getElementById("live");
  if (!root) { return; }
  var transcript = document.getElementById("transcript");
  var composer = document.getElementById("composer");
  var text = document.getElementById("composer-text");
  var status = document.getElementById("composer-status");
  var state = root.getAttribute("data-state");
  var mine = root.getAttribute("data-mine") === "yes";
  var open = { waiting: true, active: true };

  function scrollDown() { transcript.scrollTop = transcript.scrollHeight; }

  function append(line) {
    if (transcript.querySelector('li[data-id="' + line.id + '"]')) { return; }
    var empty = document.getElementById("transcript-empty");
    if (empty) { empty.remove(); }
    var li = document.createElement("li");
    li.className = "line line-" + line.kind;
    li.setAttribute("data-id", String(line.id));
    var head = document.createElement("span");
    head.className = "line-head";
    var who = document.createElement("span");
    who.className = "line-who";
    who.textContent = line.label;
    var at = document.createElement("time");
    at.textContent = line.at;
    head.appendChild(who);
    head.appendChild(document.createTextNode(" "));
    head.appendChild(at);
    var body = document.createElement("span");
    body.className = "line-text";
    body.textContent = line.text;
    li.appendChild(head);
    li.appendChild(body);
    var near = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 80;
    transcript.appendChild(li);
    if (near || line.kind === "staff") { scrollDown(); }
  }

  function closed(info) {
    var label = document.getElementById("live-state");
    if (label) {
      label.textContent = info.label;
      label.className = "state state-" + info.state;
    }
    var end = document.getElementById("end-form");
    if (end) { end.remove(); }
    if (composer) {
      var note = document.createElement("p");
      note.className = "notice info";
      note.setAttribute("role", "status");
      note.textContent = info.state === "ended"
        ? "对话已结束，不能再发送消息。"
        : "本次请求状态：" + info.label + "，不能再发送消息。";
      composer.replaceWith(note);
      composer = null;
    }
  }

  scrollDown();

  var url = root.getAttribute("data-events");
  if (url && window.EventSource) {
    var source = new EventSource(url + "?after=" + encodeURIComponent(root.getAttribute("data-last-id") || "0"));
    source.addEventListener("line", function (event) { append(JSON.parse(event.data)); });
    source.addEventListener("state", function (event) {
      var info = JSON.parse(event.data);
      if (!open[info.state]) {
        source.close();
        if (info.state !== state) { closed(info); }
        return;
      }
      if (info.state !== state || info.mine !== mine) {
        source.close();
        window.location.reload();  // taken (by me elsewhere or by someone else): new buttons
      }
    });
  }

  if (composer && text && window.fetch) {
    var busy = false;
    composer.addEventListener("submit", function (event) {
      event.preventDefault();
      var message = text.value.trim();
      if (!message || busy) { return; }
      busy = true;
      status.textContent = "正在发送……";
      var body = new URLSearchParams();
      body.set("text", message);
      fetch(composer.action, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Accept": "application/json",
          "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
          "X-CSRF-Token": root.getAttribute("data-csrf")
        },
        body: body.toString()
      }).then(function (response) {
        return response.json().catch(function () {
          return { ok: false, error: "发送失败（" + response.status + "），请刷新页面后重试。" };
        });
      }).then(function (answer) {
        if (answer.ok) {
          text.value = "";
          status.textContent = "已发送。";
        } else {
          status.textContent = answer.error || "发送失败，请重试。";
        }
      }).catch(function () {
        status.textContent = "网络异常，消息未发送，请重试。";
      }).then(function () {
        busy = false;
        text.focus();
      });
    });
    text.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        composer.requestSubmit();
      }
    });
  }
}());
