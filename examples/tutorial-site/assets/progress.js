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

  function send(events, leaving) {
    if (!loggedIn || events.length === 0) return;
    var body = JSON.stringify(events);
    if (leaving && navigator.sendBeacon && !window.fetch) {
      navigator.sendBeacon(endpoint, new Blob([body], { type: "application/json" }));
      return;
    }
    // keepalive: the request outlives the page, like a beacon, and can say JSON.
    fetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: body,
      credentials: "same-origin",
      keepalive: !!leaving,
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
