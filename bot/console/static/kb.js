/* 知识库查找 next to a reply box.
 *
 * Include with <script src="/static/kb.js" defer></script> on a console page. Every
 * <textarea data-kb-target> gets a small, collapsed search box right after it; a search asks
 * GET /console/kb/search.json?q=… (same origin, the session cookie), lists the hits with the
 * matched terms marked, and each hit's 「填入回复」 button puts the entry's answer into that
 * textarea (appended after a blank line when it already holds text). A textarea's
 * data-kb-query, when present, is the first query offered (e.g. the ticket's description).
 * Self-contained: no inline script, no other file needed; its look comes from
 * /static/intake.css, linked here when the page has not linked it.
 */
(function () {
  "use strict";

  var ENDPOINT = "/console/kb/search.json";
  var STYLE = "/static/intake.css";

  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function ensureStyle() {
    var links = document.querySelectorAll('link[rel="stylesheet"]');
    for (var i = 0; i < links.length; i++) {
      if (links[i].getAttribute("href") === STYLE) return;
    }
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = STYLE;
    document.head.appendChild(link);
  }

  function marked(runs, fallback) {
    var out = document.createDocumentFragment();
    if (!runs || !runs.length) {
      out.appendChild(document.createTextNode(fallback || ""));
      return out;
    }
    runs.forEach(function (run) {
      if (run[1]) out.appendChild(make("mark", "", run[0]));
      else out.appendChild(document.createTextNode(run[0]));
    });
    return out;
  }

  function fill(textarea, answer) {
    var current = textarea.value.replace(/\s+$/, "");
    textarea.value = current ? current + "\n\n" + answer : answer;
    textarea.dispatchEvent(new Event("input", { bubbles: true }));
    textarea.focus();
    var end = textarea.value.length;
    textarea.setSelectionRange(end, end);
  }

  function attach(textarea, index) {
    var box = make("details", "kb-helper");
    var summary = make("summary", "", "知识库查找答复");
    var row = make("div", "kb-row");
    var input = make("input");
    input.type = "search";
    input.id = "kb-helper-q-" + index;
    input.setAttribute("aria-label", "检索知识库");
    input.placeholder = "输入关键词，如：营业执照变更";
    input.value = textarea.getAttribute("data-kb-query") || "";
    var go = make("button", "secondary", "查找");
    go.type = "button";
    var status = make("p", "small muted kb-status");
    status.setAttribute("role", "status");
    status.setAttribute("aria-live", "polite");
    var list = make("ul", "kb-results");
    row.appendChild(input);
    row.appendChild(go);
    box.appendChild(summary);
    box.appendChild(row);
    box.appendChild(status);
    box.appendChild(list);
    textarea.insertAdjacentElement("afterend", box);

    var searched = false;

    function show(hits) {
      list.textContent = "";
      if (!hits.length) {
        status.textContent = "知识库中没有匹配的条目。";
        return;
      }
      status.textContent = "找到 " + hits.length + " 条。";
      hits.forEach(function (hit) {
        var item = make("li");
        var head = make("strong");
        head.appendChild(marked(hit.title_marks, hit.title));
        item.appendChild(head);
        item.appendChild(
          make("span", "small muted", " · " + hit.department + " · 得分 " + hit.score.toFixed(2))
        );
        var answer = make("p", "kb-answer");
        answer.appendChild(marked(hit.answer_marks, hit.answer));
        item.appendChild(answer);
        var source = hit.source && hit.source.document ? "来源：" + hit.source.document : "";
        if (source) item.appendChild(make("p", "small muted", source));
        var use = make("button", "", "填入回复");
        use.type = "button";
        use.setAttribute("aria-label", "填入回复：" + hit.title);
        use.addEventListener("click", function () {
          fill(textarea, hit.answer);
        });
        item.appendChild(use);
        list.appendChild(item);
      });
    }

    function search() {
      var q = input.value.trim();
      if (!q) {
        status.textContent = "请输入要查找的内容。";
        input.focus();
        return;
      }
      searched = true;
      status.textContent = "正在检索…";
      fetch(ENDPOINT + "?limit=5&q=" + encodeURIComponent(q), {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then(function (response) {
          return response.json().then(function (body) {
            if (!response.ok) throw new Error(body.error || "检索失败（" + response.status + "）");
            return body;
          });
        })
        .then(function (body) {
          show(body.hits || []);
        })
        .catch(function (error) {
          list.textContent = "";
          status.textContent = error && error.message ? error.message : "检索失败，请稍后重试。";
        });
    }

    go.addEventListener("click", search);
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter") {
        event.preventDefault(); // never submit the surrounding form
        search();
      }
    });
    box.addEventListener("toggle", function () {
      if (box.open && !searched && input.value.trim()) search();
      if (box.open) input.focus();
    });
  }

  function start() {
    var targets = document.querySelectorAll("textarea[data-kb-target]");
    if (!targets.length) return;
    ensureStyle();
    for (var i = 0; i < targets.length; i++) attach(targets[i], i);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
