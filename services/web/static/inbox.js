// The live inbox: new alerts arrive over server-sent events from this site (which
// relays notify's stream with the session's token) and are added at the top, already
// rendered by the server; alerts about something a moderator hid are removed, and come
// back when it is restored. Without
// JavaScript the page still lists every alert (and none about a hidden item).
"use strict";
(function () {
  const list = document.getElementById("inbox-items");
  const status = document.getElementById("live-status");
  if (!list || !status || !("EventSource" in window)) {
    return;
  }
  const unread = document.getElementById("unread-count");
  // The unread count follows the alerts that arrive and leave while the page is open.
  function countUnread(change) {
    const now = unread ? parseInt(unread.textContent, 10) : NaN;
    if (!isNaN(now)) {
      unread.textContent = String(Math.max(0, now + change));
    }
  }
  // The alerts a moderator's hiding withdrew while the page is open: one that comes after
  // its withdrawal (the two crossed on their way here) stays off the page.
  const withdrawn = new Set();
  const newest = list.dataset.newest;
  // Page one is not the whole inbox: older alerts are on the pages after it.
  const more = list.dataset.more === "true";
  // The first connection resumes after the newest alert the page shows; reconnects
  // send Last-Event-ID themselves, which the server prefers.
  const url = "/inbox/stream" + (newest ? "?after=" + encodeURIComponent(newest) : "");
  const source = new EventSource(url);

  source.addEventListener("open", function () {
    status.textContent = "Live: new alerts appear here as they arrive.";
  });
  source.addEventListener("notification", function (event) {
    const parsed = new DOMParser().parseFromString(event.data, "text/html");
    const item = parsed.body.firstElementChild;
    if (!item || document.getElementById(item.id) || withdrawn.has(item.id)) {
      return;
    }
    item.classList.add("fresh");
    list.prepend(document.adoptNode(item));
    if (item.classList.contains("unread")) {
      countUnread(1);
    }
    const empty = document.getElementById("inbox-empty");
    if (empty) {
      empty.remove();
    }
    const heading = item.querySelector("h2");
    status.textContent = "New alert: " + (heading ? heading.textContent.replace(/\s+/g, " ").trim() : "");
  });
  // A moderator hid what these alerts were about: they leave the page, as they left the inbox.
  source.addEventListener("withdrawn", function (event) {
    let ids = [];
    let unreadIds = [];
    try {
      const data = JSON.parse(event.data);
      ids = data.ids || [];
      unreadIds = data.unread || [];
    } catch (error) {
      return;
    }
    let gone = 0;
    ids.forEach(function (id) {
      withdrawn.add("n-" + id);
      const item = document.getElementById("n-" + id);
      if (item) {
        if (item.classList.contains("unread")) {
          countUnread(-1);
        }
        item.remove();
        gone += 1;
      } else if (more && unreadIds.indexOf(id) !== -1) {
        // Unread on a later page: counted when the page was made, gone from the inbox now.
        countUnread(-1);
      }
    });
    if (gone) {
      status.textContent = gone === 1
        ? "An alert was removed: a moderator hid what it was about."
        : gone + " alerts were removed: a moderator hid what they were about.";
    }
  });
  // A moderator restored what these alerts were about: they come back where they belong
  // (newest first, as the page lists them); one shown already is replaced (a digest gets
  // its lines back).
  source.addEventListener("restored", function (event) {
    const parsed = new DOMParser().parseFromString(event.data, "text/html");
    let back = 0;
    let later = 0;
    Array.from(parsed.body.children).forEach(function (item) {
      if (!item.id || item.id.indexOf("n-") !== 0) {
        return;
      }
      withdrawn.delete(item.id);
      const shown = document.getElementById(item.id);
      const node = document.adoptNode(item);
      if (shown) {
        countUnread((node.classList.contains("unread") ? 1 : 0) - (shown.classList.contains("unread") ? 1 : 0));
        shown.replaceWith(node);
        return;
      }
      if (node.classList.contains("unread")) {
        countUnread(1);
      }
      // Notification ids sort by creation time: before the first older one shown. One
      // older than every alert shown belongs to a later page when there is one.
      const older = Array.from(list.children).find(function (other) {
        return other.id && other.id < node.id;
      });
      if (!older && more) {
        later += 1;
        return;
      }
      list.insertBefore(node, older || null);
      back += 1;
    });
    if (later && !back) {
      status.textContent = later === 1
        ? "An older alert is back: a moderator restored what it was about. It is under Older alerts."
        : later + " older alerts are back: a moderator restored what they were about. They are under Older alerts.";
    }
    if (back) {
      const empty = document.getElementById("inbox-empty");
      if (empty) {
        empty.remove();
      }
      status.textContent = back === 1
        ? "An alert is back: a moderator restored what it was about."
        : back + " alerts are back: a moderator restored what they were about.";
    }
  });
  source.addEventListener("signed-out", function () {
    source.close();
    status.textContent = "Your session has ended: sign in again to see new alerts live.";
  });
  source.addEventListener("error", function () {
    if (source.readyState !== EventSource.CLOSED) {
      status.textContent = "Reconnecting to live alerts…";
    }
  });
})();
