// visitlog page script: reports what the learner does with a tutorial's
// video to visitlog's learning-events endpoint (POST /visitlog/events),
// resumes the video where they stopped, and reports how long the page was
// open and the learner active on it. One dependency-free file: copy it.
//
// Any page may load it. The <script> tag (or the player) carries:
//   data-page-view="<uuid>"   the id of the request record that served this
//                             page (visitlog_middleware::RecordId); sent as
//                             `page_view` with every event; without it no
//                             page activity is sent
//   data-logged-in="true"     events are sent only then (the endpoint
//                             refuses anonymous learners unless configured);
//                             data-anonymous="true" sends them anyway, for a
//                             site with VISITLOG_EVENTS_ANONYMOUS
//   data-ping-ms="15000"      (optional) the page.ping interval, and
//   data-active-window-ms="30000"  how long after the last input the
//                             learner still counts as active
// A tutorial page also has one <video id="player"> with these attributes:
//   data-foss, data-tutorial, data-language, data-video-id  (required)
//   data-resume="<seconds>"   where to start; or data-resume-fraction="0.37"
//                             (another language's point: mapped once the
//                             duration is known)
// and, optionally, buttons #mark-complete / #mark-incomplete and #status.
//
// Page activity: `page.ping` every data-ping-ms (15 s) while the page is
// visible and the learner active (an input, pointer, key, wheel, scroll or
// touch, in the last data-active-window-ms (30 s), or the video playing;
// arriving on the page and coming back to it count as input), and
// `page.hide` once per hiding when the page is hidden or closed. Both carry
// `page_view`, `active_ms` (the milliseconds the learner was active on the
// visible page since the previous ping or hide, never more than the time
// elapsed) and, on a tutorial page, its foss/tutorial/language. An inactive
// page sends no ping; its active time so far goes with the next ping or the
// hide. After hidden -> visible, pinging starts over with a fresh interval.
// At 4 requests a minute this stays far under the endpoint's per-learner
// rate limit (VISITLOG_EVENTS_RATE, default 20 requests a second).
//
// Events: video.play, video.progress (every 10 s while playing, and when
// the speed changes), video.pause, video.seek, video.ended,
// tutorial.complete / tutorial.incomplete. Each video event reports the
// stretch just watched as played_from..position (..from for a seek), the
// playback speed as `rate` (0.25 to 4), and `duration` (null while unknown:
// live streams, some WebM). Every event carries `client_event_id` (a random
// UUID made here) so the server stores a retried event once.
//
// Tracking starts when the metadata is known, also when playback began
// before (preload="none", slow links): nothing watched is lost. Seeks this
// script makes (the resume) are not reported as the learner's.
//
// Delivery: events wait in an outbox, in order, and go in bodies of at most
// 100 events and ~12 KB, one request at a time. 429/503 wait Retry-After;
// other 5xx and network errors retry with backoff (1 s doubling to 60 s, and
// at once when the browser comes back online); a 401 (the session ended)
// keeps the events for the learner's next page and sends no more from this
// one; a 400 naming one event of a body (`events[i]`) drops that event and
// sends the rest; 400/403/413 (one event)/415 otherwise cannot be mended by
// a retry and are dropped with a console warning. When the page
// is hidden or closed, the outbox (newest 500 events) is saved in
// localStorage under "visitlog.outbox.<learner>" and, unless a retry is
// waiting, sent with keepalive; the next page of the site that runs this
// script for the same learner takes what was saved (removing it) and sends
// it first.
//
// The <script> tag names the learner: data-learner="<opaque text>" (the
// example site puts a hash of the user there). Saved events are only ever
// sent by a page of the same learner, so what one user left unsent on a
// shared browser never goes out under the next user's login. Without it
// the key is "visitlog.outbox" and that guard is gone.
(function () {
  "use strict";
  var endpoint = "/visitlog/events";
  var HEARTBEAT_MS = 10000;
  // Whose saved events these are (see above); read now, while this script
  // is the one running.
  var me = document.currentScript;
  var owner = (me && me.dataset && me.dataset.learner) || "";
  var OUTBOX_KEY = "visitlog.outbox" + (owner ? "." + owner : "");
  var OUTBOX_MAX = 500;
  var MAX_PER_BODY = 100;
  var BACKOFF_MIN_MS = 1000;
  var BACKOFF_MAX_MS = 60000;
  var MAX_SECONDS = 86400; // the endpoint's longest video

  // ---- delivery: outbox, retries, localStorage --------------------------

  var outbox = []; // waiting, oldest first
  var inflight = []; // the body being sent
  var retryTimer = null;
  var backoff = 0;
  var bodyBytes = 12000; // halved on 413, for servers with a lower limit
  var loggedOut = false; // a 401: events wait for a page of this learner

  function uuid() {
    var c = window.crypto;
    if (c && c.randomUUID) return c.randomUUID();
    var b = new Uint8Array(16);
    if (c && c.getRandomValues) c.getRandomValues(b);
    else for (var i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    var h = "";
    for (var j = 0; j < 16; j++) {
      h += (b[j] + 0x100).toString(16).slice(1);
      if (j === 3 || j === 5 || j === 7 || j === 9) h += "-";
    }
    return h;
  }

  function stored() {
    try {
      var list = JSON.parse(localStorage.getItem(OUTBOX_KEY) || "[]");
      return Array.isArray(list) ? list : [];
    } catch (e) {
      return []; // no storage (privacy mode) or a damaged entry
    }
  }

  function store(list) {
    try {
      if (list.length) localStorage.setItem(OUTBOX_KEY, JSON.stringify(list.slice(-OUTBOX_MAX)));
      else localStorage.removeItem(OUTBOX_KEY);
    } catch (e) {
      // Full or forbidden: what is in memory still goes while the page lives.
    }
  }

  function ids(list) {
    var seen = {};
    for (var i = 0; i < list.length; i++) seen[list[i].client_event_id] = true;
    return seen;
  }

  function bound() {
    if (outbox.length > OUTBOX_MAX) outbox = outbox.slice(-OUTBOX_MAX); // oldest go
  }

  // Takes what earlier pages saved (and removes it): it goes first, ahead
  // of this page's events, skipping what this page already holds.
  function restore() {
    var saved = stored();
    if (!saved.length) return;
    store([]);
    var have = ids(inflight.concat(outbox));
    outbox = saved.filter(function (e) { return !have[e.client_event_id]; }).concat(outbox);
    bound();
  }

  // Saves everything not yet accepted, the body in flight included (the
  // server drops a second copy by client_event_id).
  function persist() {
    var list = stored();
    var have = ids(list);
    inflight.concat(outbox).forEach(function (e) {
      if (!have[e.client_event_id]) list.push(e);
    });
    store(list);
  }

  // An accepted body needs no saved copy (the page lived on after hiding).
  function forget(batch) {
    var list = stored();
    if (!list.length) return;
    var done = ids(batch);
    store(list.filter(function (e) { return !done[e.client_event_id]; }));
  }

  // `hold`: the page is leaving; the caller sends with keepalive.
  function queue(events, hold) {
    outbox = outbox.concat(events);
    bound();
    if (!hold) pump(false);
  }

  function nextBody() {
    var batch = [];
    var bytes = 2;
    while (batch.length < outbox.length && batch.length < MAX_PER_BODY) {
      var size = JSON.stringify(outbox[batch.length]).length + 1;
      if (batch.length > 0 && bytes + size > bodyBytes) break;
      batch.push(outbox[batch.length]);
      bytes += size;
    }
    outbox = outbox.slice(batch.length);
    return batch;
  }

  function later(batch, ms) {
    outbox = batch.concat(outbox);
    bound();
    clearTimeout(retryTimer);
    retryTimer = setTimeout(function () {
      retryTimer = null;
      pump(false);
    }, ms);
  }

  function retryAfter(response) {
    var secs = parseInt(response.headers.get("Retry-After") || "", 10);
    return isFinite(secs) && secs > 0 ? secs * 1000 : 0;
  }

  function refused(batch, status) {
    console.warn("visitlog: " + batch.length + " learning events refused with " + status + ", dropped");
    forget(batch);
    pump(false);
  }

  // One body at a time, in order; none while a retry waits. `leaving`: the
  // page is going, so the request must outlive it (keepalive; a beacon
  // where fetch is missing).
  function pump(leaving) {
    if (loggedOut || inflight.length || retryTimer !== null || !outbox.length) return;
    var batch = nextBody();
    var body = JSON.stringify(batch);
    if (!window.fetch) {
      if (navigator.sendBeacon) navigator.sendBeacon(endpoint, new Blob([body], { type: "application/json" }));
      return; // no answer to read: a saved copy goes again on the next page
    }
    inflight = batch;
    fetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: body,
      credentials: "same-origin",
      keepalive: leaving,
    }).then(function (response) {
      inflight = [];
      var s = response.status;
      if (s >= 200 && s < 300) {
        backoff = 0;
        forget(batch);
        pump(false);
      } else if (s === 413 && batch.length > 1) {
        bodyBytes = Math.max(1000, Math.floor(bodyBytes / 2));
        later(batch, 0);
      } else if (s === 429 || s >= 500) {
        var wait = retryAfter(response);
        if (!wait) {
          backoff = backoff ? Math.min(backoff * 2, BACKOFF_MAX_MS) : BACKOFF_MIN_MS;
          wait = backoff;
        }
        later(batch, wait);
      } else if (s === 401) {
        // Logged out (the session ended): the events are this learner's,
        // kept for their next page once logged in again; none is sent
        // from this page any more.
        outbox = batch.concat(outbox);
        bound();
        persist();
        loggedOut = true;
      } else if (s === 400 && batch.length > 1) {
        // One bad event refuses the whole body; the answer names it
        // (`events[i].field: ...`): only that one is dropped.
        response.json().then(function (answer) {
          var bad = /^events\[(\d+)\]/.exec((answer && answer.error) || "");
          var i = bad ? parseInt(bad[1], 10) : -1;
          if (i < 0 || i >= batch.length) return refused(batch, s);
          refused([batch[i]], s);
          later(batch.slice(0, i).concat(batch.slice(i + 1)), 0);
        }).catch(function () {
          refused(batch, s);
        });
      } else {
        // 400, 403, 413, 415: the same body would be refused again.
        refused(batch, s);
      }
    }, function () {
      inflight = [];
      backoff = backoff ? Math.min(backoff * 2, BACKOFF_MAX_MS) : BACKOFF_MIN_MS;
      later(batch, backoff); // offline or blocked
    });
  }

  window.addEventListener("online", function () {
    if (retryTimer !== null) {
      clearTimeout(retryTimer);
      retryTimer = null;
      backoff = 0;
      pump(false);
    }
  });
  // Back from the back/forward cache: another page may have taken or saved events.
  window.addEventListener("pageshow", function (e) {
    if (e.persisted) {
      left = false;
      restore();
      pump(false);
    }
  });

  // The page is hidden or going: what it adds last (the stretch so far),
  // then save what is unsent for the next page, and send it in a request
  // that outlives this one, unless the endpoint is failing (a retry waits):
  // then the saved copy goes from the next page, and the server never sees
  // it twice. (When the keepalive request lands and the page dies before
  // it hears so, the next page sends the copy again: the server keeps one
  // event per client_event_id.)
  // Once per hiding: `visibilitychange` and `pagehide` both come when a
  // page closes, and a second keepalive body could only be saved.
  var onLeave = [];
  var left = false;
  function leave() {
    if (left) return;
    left = true;
    for (var i = 0; i < onLeave.length; i++) onLeave[i]();
    persist();
    pump(true);
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") leave();
    else left = false;
  });
  window.addEventListener("pagehide", leave);

  restore();
  pump(false);

  // ---- what the page says -----------------------------------------------

  var video = document.getElementById("player");
  // The script tag's data-* first, then the player's (older pages put the
  // page view and the login there).
  function attr(name) {
    var v = me && me.dataset ? me.dataset[name] : undefined;
    return v === undefined && video ? video.dataset[name] : v;
  }
  function millis(name, fallback) {
    var n = parseInt(attr(name) || "", 10);
    return n > 0 ? n : fallback;
  }
  var pageView = attr("pageView") || null;
  var sending = attr("loggedIn") === "true" || attr("anonymous") === "true";

  function send(events, hold) {
    if (sending) queue(events, hold);
  }

  // ---- page activity: page.ping and page.hide ---------------------------

  var PING_MS = millis("pingMs", 15000);
  var ACTIVE_WINDOW_MS = millis("activeWindowMs", 30000);
  var MAX_ACTIVE_MS = 3600000; // the endpoint's limit per event
  var clock = window.performance && performance.now ? function () { return performance.now(); } : Date.now;
  var tutorial = video && video.dataset.foss && video.dataset.tutorial && video.dataset.language
    ? { foss: video.dataset.foss, tutorial: video.dataset.tutorial, language: video.dataset.language }
    : null;
  var visible = document.visibilityState !== "hidden";
  var lastInput = clock(); // arriving on the page is the learner's doing
  var since = lastInput; // active time is counted up to here
  var reportedAt = lastInput; // the previous ping or hide
  var activeMs = 0; // active since the previous ping or hide
  var playing = !!video && !video.paused && !video.ended;
  var pinger = null;

  // Counts the active part of [since, t]. Every change of what makes the
  // learner active (an input, play, pause, hiding) counts up to its moment
  // first, so the state in force over the whole stretch is known.
  function accrue(t) {
    if (visible) {
      var end = playing ? t : Math.min(t, lastInput + ACTIVE_WINDOW_MS);
      if (end > since) activeMs += end - since;
    }
    since = t;
  }

  function active(t) {
    return visible && (playing || t - lastInput <= ACTIVE_WINDOW_MS);
  }

  function report(type, hold) {
    var t = clock();
    accrue(t);
    var e = { type: type, client_event_id: uuid(), page_view: pageView };
    e.active_ms = Math.round(Math.max(0, Math.min(activeMs, t - reportedAt, MAX_ACTIVE_MS)));
    if (tutorial) for (var k in tutorial) e[k] = tutorial[k];
    activeMs = 0;
    reportedAt = t;
    send([e], hold);
  }

  function input() {
    var t = clock();
    if (t - lastInput < 250) return; // pointermove floods; a quarter second is precise enough
    accrue(t);
    lastInput = t;
  }

  function playState(now) {
    var t = clock();
    accrue(t);
    playing = now;
    lastInput = t; // play and pause are the learner's acts (or just ended)
  }

  function ping() {
    if (active(clock())) report("page.ping", false);
  }

  // Visible again (or back from the back/forward cache): a fresh interval.
  function resume() {
    if (visible && pinger !== null) return;
    var t = clock();
    visible = true;
    since = t;
    lastInput = t; // coming back to the page is the learner's doing
    clearInterval(pinger);
    pinger = setInterval(ping, PING_MS);
  }

  if (pageView) {
    ["pointerdown", "pointermove", "keydown", "wheel", "touchstart", "scroll"].forEach(function (name) {
      document.addEventListener(name, input, { capture: true, passive: true });
    });
    if (video) {
      video.addEventListener("play", function () { playState(true); });
      video.addEventListener("pause", function () { playState(false); });
      video.addEventListener("ended", function () { playState(false); });
    }
    // Runs in leave(), once per hiding, before the outbox is saved and sent.
    onLeave.push(function () {
      report("page.hide", true);
      visible = false;
      clearInterval(pinger);
      pinger = null;
    });
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") resume();
    });
    window.addEventListener("pageshow", function (e) {
      if (e.persisted && document.visibilityState !== "hidden") resume();
    });
    if (visible) pinger = setInterval(ping, PING_MS);
  }

  // ---- the video ---------------------------------------------------------

  if (!video) return;
  var info = {
    foss: video.dataset.foss,
    tutorial: video.dataset.tutorial,
    language: video.dataset.language,
    video_id: video.dataset.videoId,
  };
  var started = false; // the metadata is known: tracking runs
  var stretchFrom = null; // where the current stretch of playback began
  var stretchRate = 1; // its playback speed
  var last = 0; // the position before a seek (from timeupdate)
  var ownSeek = null; // where this script seeks to (the resume), until it happens
  var pressedAt = null; // where play was pressed before the metadata came
  var timer = null;

  function known() {
    return isFinite(video.duration) && video.duration > 0;
  }

  function at(t) {
    t = Math.min(Math.max(0, t || 0), MAX_SECONDS);
    return known() ? Math.min(t, video.duration) : t;
  }

  function speed() {
    var r = video.playbackRate;
    return isFinite(r) && r > 0 ? Math.max(0.25, Math.min(4, r)) : 1;
  }

  function event(type) {
    var e = { type: type, client_event_id: uuid() };
    for (var k in info) e[k] = info[k];
    if (pageView) e.page_view = pageView;
    return e;
  }

  function videoEvent(type) {
    var e = event(type);
    e.position = at(video.currentTime);
    e.duration = known() ? video.duration : null;
    e.rate = speed();
    return e;
  }

  // A stretch ending at `end` was watched since `stretchFrom`, at its speed.
  function stretch(e, end) {
    if (stretchFrom !== null && end >= stretchFrom) {
      e.played_from = at(stretchFrom);
      e.rate = stretchRate;
    }
    return e;
  }

  function begin(from) {
    stretchFrom = from;
    stretchRate = speed();
    send([videoEvent("video.play")]);
    clearInterval(timer);
    timer = setInterval(function () { heartbeat(false); }, HEARTBEAT_MS);
  }

  // Reports the stretch so far and starts the next one here.
  function heartbeat(hold) {
    if (!started || video.paused) return;
    var e = stretch(videoEvent("video.progress"), video.currentTime);
    stretchFrom = video.currentTime;
    stretchRate = speed();
    send([e], hold);
  }

  // The metadata is known: resume, and if the learner already pressed play
  // (before the browser knew anything), track from here.
  function start() {
    if (started) return;
    started = true;
    var resume = parseFloat(video.dataset.resume || "0");
    var fraction = parseFloat(video.dataset.resumeFraction || "");
    if (!(resume > 0) && fraction > 0 && fraction < 1 && known()) resume = fraction * video.duration;
    if (resume > 0 && (!known() || resume < video.duration) && video.currentTime < 0.5) {
      ownSeek = resume;
      video.currentTime = resume;
      pressedAt = null;
    }
    last = video.currentTime;
    // Playback may have run a little before this event was handled.
    if (!video.paused) begin(pressedAt !== null ? Math.min(pressedAt, video.currentTime) : video.currentTime);
  }

  video.addEventListener("loadedmetadata", start);
  video.addEventListener("durationchange", function () {
    if (video.readyState >= 1) start();
  });
  video.addEventListener("play", function () {
    // Before the metadata, start() begins where play was pressed.
    if (started) begin(video.currentTime);
    else pressedAt = video.currentTime;
  });
  video.addEventListener("pause", function () {
    clearInterval(timer);
    if (!started || video.ended) return; // "ended" reports the end
    send([stretch(videoEvent("video.pause"), video.currentTime)]);
    stretchFrom = null;
    last = video.currentTime; // a seek from here starts here
  });
  video.addEventListener("ratechange", function () {
    if (stretchFrom !== null && speed() !== stretchRate) heartbeat(false);
  });
  video.addEventListener("timeupdate", function () {
    if (!video.seeking) last = video.currentTime;
  });
  video.addEventListener("seeking", function () {
    if (!started) return;
    var playing = !video.paused;
    var mine = ownSeek !== null && Math.abs(video.currentTime - ownSeek) < 1;
    ownSeek = null;
    if (mine) {
      // The resume is not the learner's seek: reporting it would move the
      // saved position back to an older one on every reload.
    } else {
      var e = stretch(videoEvent("video.seek"), last);
      delete e.position;
      e.from = at(last);
      e.to = at(video.currentTime);
      if (e.from !== e.to || e.played_from !== undefined) send([e]);
    }
    stretchFrom = playing ? video.currentTime : null;
    stretchRate = speed();
    last = video.currentTime;
  });
  video.addEventListener("ended", function () {
    clearInterval(timer);
    if (!started) return;
    var end = known() ? video.duration : video.currentTime;
    var e = stretch(videoEvent("video.ended"), end);
    e.position = at(end);
    send([e]);
    stretchFrom = null;
  });

  // The stretch so far, ahead of the page.hide.
  onLeave.unshift(function () { heartbeat(true); });

  if (video.readyState >= 1) start(); // the metadata came before this script

  function mark(complete) {
    send([event(complete ? "tutorial.complete" : "tutorial.incomplete")]);
    var status = document.getElementById("status");
    if (status) status.textContent = complete ? "completed" : "not completed";
  }
  var done = document.getElementById("mark-complete");
  var undone = document.getElementById("mark-incomplete");
  if (done) done.addEventListener("click", function () { mark(true); });
  if (undone) undone.addEventListener("click", function () { mark(false); });
})();
