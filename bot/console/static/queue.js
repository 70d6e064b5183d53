/* 工作台 (/console/): keeps the queue current without a reload, and rings when an enterprise
   starts waiting for a person. No library. The page works without this file (the filters are
   a plain GET form; a <noscript> refresh reloads it every minute).

   Every few seconds it asks the feed (#queue[data-feed], same filters as the page) whether
   the version stamp changed; if so it puts the re-rendered rows, waiting requests and summary
   in place, marks the new rows and says how many arrived. Every minute it asks for a full
   render anyway, so the countdowns stay true. The tone is made with the Web Audio API; browsers
   allow sound only after a user gesture, hence the "开启声音提醒" button. */
(function () {
  "use strict";
  var root = document.getElementById("queue");
  if (!root || !window.fetch) return;

  var feed = root.getAttribute("data-feed");
  var version = root.getAttribute("data-version");
  var maxId = parseInt(root.getAttribute("data-max-id"), 10) || 0;
  var pollMs = (parseInt(root.getAttribute("data-poll"), 10) || 5) * 1000;
  var fullEvery = Math.max(1, Math.round(60000 / pollMs));
  var rows = document.getElementById("queue-rows");
  var waiting = document.getElementById("waiting");
  var summary = document.getElementById("queue-summary");
  var news = document.getElementById("queue-news");
  var state = document.getElementById("feed-state");
  var soundButton = document.getElementById("sound-toggle");
  var baseTitle = document.title;
  var polls = 0;
  var failures = 0;
  var stopped = false;

  function waitingIds() {
    var ids = {};
    var items = waiting.querySelectorAll("[data-waiting-id]");
    for (var i = 0; i < items.length; i++) ids[items[i].getAttribute("data-waiting-id")] = true;
    return ids;
  }
  var knownWaiting = waitingIds();

  /* ---------------------------------------------------------------- sound */
  var KEY = "yxby.queue.sound";
  var audio = null;
  function soundOn() {
    try { return window.localStorage.getItem(KEY) === "1"; } catch (e) { return false; }
  }
  function remember(on) {
    try { window.localStorage.setItem(KEY, on ? "1" : "0"); } catch (e) { /* private mode */ }
  }
  function context() {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    if (!audio) audio = new Ctx();
    if (audio.state === "suspended") audio.resume();
    return audio;
  }
  function tone() {
    var ctx = soundOn() ? context() : null;
    if (!ctx || ctx.state !== "running") return false;
    var t = ctx.currentTime;
    [[880, 0], [1320, 0.18]].forEach(function (step) {
      var osc = ctx.createOscillator();
      var gain = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = step[0];
      gain.gain.setValueAtTime(0.0001, t + step[1]);
      gain.gain.exponentialRampToValueAtTime(0.25, t + step[1] + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + step[1] + 0.16);
      osc.connect(gain);
      gain.connect(ctx.destination);
      osc.start(t + step[1]);
      osc.stop(t + step[1] + 0.17);
    });
    root.setAttribute("data-rang", String((parseInt(root.getAttribute("data-rang"), 10) || 0) + 1));
    return true;
  }
  function showSound() {
    var on = soundOn();
    soundButton.textContent = on ? "声音提醒已开启" : "开启声音提醒";
    soundButton.setAttribute("aria-pressed", on ? "true" : "false");
    soundButton.title = on ? "点击关闭声音提醒" : "有企业等待人工接入时播放提示音";
  }
  if (soundButton) {
    soundButton.hidden = false;
    showSound();
    soundButton.addEventListener("click", function () {
      remember(!soundOn());
      showSound();
      if (soundOn()) { context(); tone(); }
    });
    if (soundOn()) {
      /* the browser keeps the audio suspended until the person touches the page */
      var wake = function () {
        context();
        document.removeEventListener("pointerdown", wake);
        document.removeEventListener("keydown", wake);
      };
      document.addEventListener("pointerdown", wake);
      document.addEventListener("keydown", wake);
    }
  }

  /* ---------------------------------------------------------------- updates */
  function say(text) {
    news.textContent = text;
    news.hidden = !text;
  }
  function setState(text, lost) {
    state.hidden = !text;
    state.textContent = text;
    state.className = "small " + (lost ? "lost" : "muted");
  }
  function titleFor(count) {
    document.title = count ? "(" + count + " 位等待接入) " + baseTitle : baseTitle;
  }

  function replaceRows(html, oldMax) {
    var active = document.activeElement;
    var focusHref = active && rows.contains(active) ? active.getAttribute("href") : null;
    rows.innerHTML = html;
    var trs = rows.querySelectorAll("tr[data-id]");
    for (var i = 0; i < trs.length; i++) {
      if ((parseInt(trs[i].getAttribute("data-id"), 10) || 0) > oldMax) trs[i].classList.add("fresh");
    }
    if (focusHref) {
      var again = rows.querySelector('a[href="' + focusHref.replace(/"/g, "") + '"]');
      if (again) again.focus();
    }
  }

  function apply(body) {
    var oldMax = maxId;
    version = body.version;
    maxId = body.max_id;
    if (!body.changed) return;
    var html = body.html;
    replaceRows(html.rows, oldMax);
    summary.innerHTML = html.summary;
    var focusInWaiting = waiting.contains(document.activeElement);
    waiting.innerHTML = html.waiting;
    waiting.hidden = !html.waiting;
    var ids = waitingIds();
    var arrived = 0;
    for (var id in ids) {
      if (!knownWaiting[id]) {
        arrived++;
        var li = waiting.querySelector('[data-waiting-id="' + id + '"]');
        if (li) li.classList.add("fresh");
      }
    }
    knownWaiting = ids;
    titleFor(body.waiting.length);
    if (focusInWaiting && !waiting.contains(document.activeElement)) soundButton.focus();
    var parts = [];
    if (body["new"]) parts.push("新增 " + body["new"] + " 条诉求");
    if (arrived) parts.push(arrived + " 位企业请求人工接入");
    if (parts.length) say(parts.join("，") + "（" + new Date().toLocaleTimeString("zh-CN") + "）");
    if (arrived) tone();
  }

  function poll() {
    if (stopped) return;
    polls++;
    var sep = feed.indexOf("?") >= 0 ? "&" : "?";
    var url = feed + sep + "v=" + encodeURIComponent(version) + "&max=" + maxId;
    if (polls % fullEvery === 0) url += "&full=1";
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (response) {
        var json = (response.headers.get("content-type") || "").indexOf("application/json") >= 0;
        if (response.redirected || !json) {
          stopped = true;
          setState("登录已过期，请刷新页面重新登录", true);
          return null;
        }
        if (!response.ok) throw new Error(String(response.status));
        return response.json();
      })
      .then(function (body) {
        if (!body) return;
        failures = 0;
        setState("");
        apply(body);
      })
      .catch(function () {
        failures++;
        if (failures >= 2) setState("暂时无法获取更新，正在重试…", true);
      })
      .then(function () {
        if (!stopped) window.setTimeout(poll, failures ? Math.min(pollMs * (failures + 1), 60000) : pollMs);
      });
  }

  titleFor(Object.keys(knownWaiting).length);
  window.setTimeout(poll, pollMs);
})();
