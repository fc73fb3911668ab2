// Reports what the learner does with the tutorial video to visitlog's
// learning-events endpoint, and resumes the video where they stopped.
// Events: video.play, video.progress (every 10 s while playing),
// video.pause, video.seek, video.ended, tutorial.complete/incomplete;
// a last video.progress as a beacon when the page is hidden or closed.
// Each reports the stretch just watched as played_from..position.
(function () {
  "use strict";
  var video = document.getElementById("player");
  if (!video) return;
  var endpoint = "/visitlog/events";
  var HEARTBEAT_MS = 10000;
  var info = {
    foss: video.dataset.foss,
    tutorial: video.dataset.tutorial,
    language: video.dataset.language,
    video_id: video.dataset.videoId,
  };
  var loggedIn = video.dataset.loggedIn === "true";
  var stretchFrom = null; // where the current stretch of playback began
  var last = 0; // the position before a seek (from timeupdate)
  var timer = null;

  function known() {
    return isFinite(video.duration) && video.duration > 0;
  }

  function at(t) {
    return Math.max(0, Math.min(t, video.duration));
  }

  function event(type) {
    var e = { type: type };
    for (var k in info) e[k] = info[k];
    e.position = at(video.currentTime);
    e.duration = video.duration;
    return e;
  }

  // A stretch ending at `end` was watched since `stretchFrom`.
  function stretch(e, end) {
    if (stretchFrom !== null && end >= stretchFrom) e.played_from = at(stretchFrom);
    return e;
  }

  // Events go out one request at a time, in order; what comes meanwhile
  // waits and goes as one body after. A body refused with 429 (too many) or
  // 503 (busy) goes again after Retry-After, still ahead of what came later;
  // the endpoint takes a body whole or not at all, so a retry never
  // duplicates. At most one body's worth waits (the newest events).
  var MAX_PER_BODY = 100;
  var queue = [];
  var busy = false;
  var retryTimer = null;

  function send(events, leaving) {
    if (!loggedIn || events.length === 0) return;
    queue = queue.concat(events).slice(-MAX_PER_BODY);
    if (leaving) leave();
    else pump();
  }

  function retry(batch, secs) {
    queue = batch.concat(queue).slice(-MAX_PER_BODY);
    retryTimer = setTimeout(function () {
      retryTimer = null;
      pump();
    }, secs * 1000);
  }

  function pump() {
    if (busy || retryTimer !== null || queue.length === 0) return;
    var batch = queue;
    queue = [];
    busy = true;
    fetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(batch),
      credentials: "same-origin",
    }).then(function (response) {
      busy = false;
      if (response.status === 429 || response.status === 503) {
        var secs = parseInt(response.headers.get("Retry-After") || "1", 10);
        retry(batch, isFinite(secs) && secs > 0 ? secs : 1);
      } else {
        pump(); // 202, or a refusal a retry cannot mend
      }
    }).catch(function () {
      busy = false;
      retry(batch, 5); // offline: try again in a while
    });
  }

  // The page is going: everything waiting goes now, in a request that
  // outlives the page (keepalive, or a beacon where fetch is missing).
  function leave() {
    clearTimeout(retryTimer);
    retryTimer = null;
    var body = JSON.stringify(queue);
    queue = [];
    if (!window.fetch && navigator.sendBeacon) {
      navigator.sendBeacon(endpoint, new Blob([body], { type: "application/json" }));
      return;
    }
    fetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: body,
      credentials: "same-origin",
      keepalive: true,
    }).catch(function () {});
  }

  function heartbeat(leaving) {
    if (video.paused || !known()) return;
    var e = stretch(event("video.progress"), video.currentTime);
    stretchFrom = video.currentTime;
    send([e], leaving);
  }

  video.addEventListener("loadedmetadata", function () {
    var resume = parseFloat(video.dataset.resume || "0");
    if (resume > 0 && resume < video.duration) video.currentTime = resume;
    last = video.currentTime;
  });
  video.addEventListener("play", function () {
    if (!known()) return;
    stretchFrom = video.currentTime;
    send([event("video.play")]);
    clearInterval(timer);
    timer = setInterval(heartbeat, HEARTBEAT_MS);
  });
  video.addEventListener("pause", function () {
    clearInterval(timer);
    if (video.ended || !known()) return; // "ended" reports the end
    send([stretch(event("video.pause"), video.currentTime)]);
    stretchFrom = null;
  });
  video.addEventListener("timeupdate", function () {
    if (!video.seeking) last = video.currentTime;
  });
  video.addEventListener("seeking", function () {
    if (!known()) return;
    var e = stretch(event("video.seek"), last);
    delete e.position;
    e.from = at(last);
    e.to = at(video.currentTime);
    send([e]);
    stretchFrom = video.paused ? null : video.currentTime;
    last = video.currentTime;
  });
  video.addEventListener("ended", function () {
    clearInterval(timer);
    if (!known()) return;
    var e = stretch(event("video.ended"), video.duration);
    e.position = video.duration;
    send([e]);
    stretchFrom = null;
  });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") heartbeat(true);
  });
  window.addEventListener("pagehide", function () {
    heartbeat(true);
  });

  function mark(complete) {
    var e = { type: complete ? "tutorial.complete" : "tutorial.incomplete" };
    for (var k in info) e[k] = info[k];
    send([e]);
    var status = document.getElementById("status");
    if (status) status.textContent = complete ? "completed" : "not completed";
  }
  var done = document.getElementById("mark-complete");
  var undone = document.getElementById("mark-incomplete");
  if (done) done.addEventListener("click", function () { mark(true); });
  if (undone) undone.addEventListener("click", function () { mark(false); });
})();
