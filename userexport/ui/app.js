/*
 * "Bulk operation results": the list of exports, one export's view and the form that starts
 * one. Plain JavaScript, no framework, no build step, nothing loaded from elsewhere.
 *
 * Served inlined into index.html by userexport/resultspage.py, under a Content-Security-Policy
 * that requires Trusted Types: API data only ever reaches the page through textContent and
 * DOM nodes, never as HTML.
 *
 * Authorisation is the API's own. A function key given to the page as ?code=KEY is read once,
 * kept in sessionStorage (this tab only, gone when it closes), dropped from the address bar and
 * sent as the x-functions-key header on every API call: never in a URL the page builds, so it
 * stays out of the browser's history, bookmarks and Referer headers. App Service
 * authentication's cookie goes along with every same-origin request.
 */
"use strict";

(() => {
  // ---------------------------------------------------------------------------------------
  // Where the API is, and how it is called.

  const KEY_HEADER = "x-functions-key";
  const KEY_STORE = "userexport.functionKey";
  const FUNCTION_KEY = takeFunctionKey();
  // The page is /api/ui: the API's routes are its siblings (/api/exports, /api/columns).
  const API_BASE = location.pathname.replace(/\/ui\/?$/, "/");
  const FINAL = new Set(["succeeded", "completedWithErrors", "failed", "cancelled", "estimated"]);
  const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._ -]{0,150}\.csv$/;
  const SERIES = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;
  const DEFAULT_RETRY_AFTER = 5;
  const IDLE_LIST_POLL = 30;
  const MAX_BACKOFF = 60;

  /** The function key: ?code= of the address the page was opened with (then kept in this
   * tab's sessionStorage), else the one this tab kept from an earlier load, else none (App
   * Service authentication, or a local stack without keys). `code` leaves the address bar at
   * once; the rest of the query and the #/ route stay as they were. */
  function takeFunctionKey() {
    const query = location.search.replace(/^\?/, "");
    const parts = query === "" ? [] : query.split("&");
    const isCode = (part) => new URLSearchParams(part).has("code");
    const given = new URLSearchParams(parts.find(isCode) || "").get("code") || null;
    let kept = null;
    try {
      if (given) sessionStorage.setItem(KEY_STORE, given);
      kept = sessionStorage.getItem(KEY_STORE);
    } catch (_error) {
      // Storage turned off: the key lasts as long as this page does.
    }
    if (parts.some(isCode)) {
      const rest = parts.filter((part) => part !== "" && !isCode(part));
      history.replaceState(history.state, "",
        location.pathname + (rest.length ? `?${rest.join("&")}` : "") + location.hash);
    }
    return given || kept || null;
  }

  /** An API route, relative to /api/ (e.g. "exports"). */
  function apiUrl(relative) {
    return new URL(relative, location.origin + API_BASE);
  }

  /** A URL the API handed out (statusUrl, nextLink), called on this page's own origin: behind
   * a proxy the API may name another scheme or host for itself. A `code` in it is dropped: the
   * key goes along as a header. */
  function followUrl(given) {
    const url = new URL(given, location.href);
    const own = new URL(url.pathname + url.search, location.origin);
    if (own.searchParams.has("code")) own.searchParams.delete("code");
    return own;
  }

  class ApiError extends Error {
    constructor(message, status, problem) {
      super(message);
      this.status = status;
      this.problem = problem;
    }
  }

  function parseRetryAfter(value) {
    if (!value) return null;
    if (/^\d+$/.test(value.trim())) return Number(value.trim());
    const when = Date.parse(value);
    return Number.isNaN(when) ? null : Math.max(0, (when - Date.now()) / 1000);
  }

  function failureMessage(status, problem) {
    const detail = problem && typeof problem.detail === "string" ? problem.detail : "";
    const title = problem && typeof problem.title === "string" ? problem.title : "";
    if (status === 401) {
      const how = "open this page with the function key (…/api/ui?code=<key>) or sign in again.";
      return "Not authorised (401): " +
        (FUNCTION_KEY ? "the function key this tab holds was refused; " + how : how) +
        (detail ? " " + detail : "");
    }
    if (status === 403) {
      return "Access denied (403): your account or key may not use this app." +
        (detail ? " " + detail : "");
    }
    if (status === 429) {
      return "Too many exports are queued: nothing was started." + (detail ? " " + detail : "");
    }
    if (status >= 500) {
      return `The function app answered ${status}${title ? " (" + title + ")" : ""}; ` +
        "try again in a moment." + (detail ? " " + detail : "");
    }
    if (detail) return title ? `${title}: ${detail}` : detail;
    return `The function app answered ${status}.`;
  }

  /** Calls the API; answers {status, data, retryAfter} or throws an ApiError that says what
   * went wrong in words. */
  async function callApi(method, url, body, extraHeaders) {
    const headers = { Accept: "application/json", ...(extraHeaders || {}) };
    if (FUNCTION_KEY) headers[KEY_HEADER] = FUNCTION_KEY;
    const init = { method, headers, cache: "no-store", credentials: "same-origin", redirect: "manual" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (_error) {
      throw new ApiError(
        "The function app could not be reached. Check the network connection; " +
          "the page tries again by itself.",
        0,
        null,
      );
    }
    if (response.type === "opaqueredirect") {
      // App Service authentication sends an expired session to the sign-in page.
      throw new ApiError("Your sign-in has expired: reload the page to sign in again.", 401, null);
    }
    let data = null;
    const type = response.headers.get("Content-Type") || "";
    if (type.includes("json")) {
      try {
        data = await response.json();
      } catch (_error) {
        data = null;
      }
    }
    if (!response.ok) {
      throw new ApiError(failureMessage(response.status, data), response.status, data);
    }
    return {
      status: response.status,
      data,
      retryAfter: parseRetryAfter(response.headers.get("Retry-After")),
    };
  }

  // ---------------------------------------------------------------------------------------
  // DOM helpers: nodes and text only, never HTML.

  const $ = (id) => document.getElementById(id);

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "className") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  const SVG = "http://www.w3.org/2000/svg";
  const LINE = {
    fill: "none",
    stroke: "currentColor",
    "stroke-width": "1.5",
    "stroke-linecap": "round",
    "stroke-linejoin": "round",
  };
  const WHITE = { ...LINE, stroke: "#ffffff", "stroke-width": "1.6" };
  const ICONS = {
    add: [["path", { ...LINE, d: "M8 2.5v11M2.5 8h11" }]],
    refresh: [
      ["path", { ...LINE, d: "M13.5 8a5.5 5.5 0 1 1-1.6-3.9" }],
      ["path", { ...LINE, d: "M12.2 1.8v2.6H9.6" }],
    ],
    download: [["path", { ...LINE, d: "M8 2v8.5M4.5 7 8 10.5 11.5 7M3 13.75h10" }]],
    queued: [
      ["circle", { ...LINE, cx: "8", cy: "8", r: "6.25" }],
      ["path", { ...LINE, d: "M8 4.5V8l2.4 1.6" }],
    ],
    running: [
      ["circle", { ...LINE, cx: "8", cy: "8", r: "6", "stroke-width": "2", "stroke-opacity": "0.25" }],
      ["path", { ...LINE, d: "M8 2a6 6 0 0 1 6 6", "stroke-width": "2" }],
    ],
    succeeded: [
      ["circle", { cx: "8", cy: "8", r: "7", fill: "currentColor" }],
      ["path", { ...WHITE, d: "M4.8 8.3 7 10.4l4.2-4.6" }],
    ],
    completedWithErrors: [
      ["path", {
        d: "M8 1.2c.4 0 .7.2.9.5l6.3 11.2c.4.7-.1 1.6-.9 1.6H1.7c-.8 0-1.3-.9-.9-1.6L7.1 1.7" +
          "c.2-.3.5-.5.9-.5z",
        fill: "currentColor",
      }],
      ["path", { ...LINE, stroke: "#1b1a19", "stroke-width": "1.6", d: "M8 5.6v3.6" }],
      ["circle", { cx: "8", cy: "11.7", r: "0.95", fill: "#1b1a19" }],
    ],
    failed: [
      ["circle", { cx: "8", cy: "8", r: "7", fill: "currentColor" }],
      ["path", { ...WHITE, d: "M5.6 5.6l4.8 4.8M10.4 5.6l-4.8 4.8" }],
    ],
    cancelled: [
      ["circle", { ...LINE, cx: "8", cy: "8", r: "6.25" }],
      ["path", { ...LINE, d: "M3.6 12.4 12.4 3.6" }],
    ],
    estimated: [ // a stopwatch: how long it would take
      ["circle", { ...LINE, cx: "8", cy: "9.25", r: "5.5" }],
      ["path", { ...LINE, d: "M6.25 1.75h3.5M8 1.75v2M8 9.25 10.2 7" }],
    ],
  };

  function icon(name) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 16 16");
    svg.setAttribute("class", `icon icon-${name}`);
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    for (const [tag, attributes] of ICONS[name] || []) {
      const shape = document.createElementNS(SVG, tag);
      for (const [key, value] of Object.entries(attributes)) shape.setAttribute(key, value);
      svg.append(shape);
    }
    return svg;
  }

  const STATUS_WORDS = {
    queued: "Queued",
    running: "Running",
    succeeded: "Succeeded",
    completedWithErrors: "Completed with errors",
    failed: "Failed",
    cancelled: "Cancelled",
    estimated: "Estimated",
  };
  const TRIGGER_WORDS = { http: "On demand", timer: "Nightly schedule" };
  const FILTER_LABELS = {
    userType: "User type",
    accountEnabled: "Account enabled",
    department: "Department",
    companyName: "Company name",
    domain: "Domain",
    userPrincipalNamePrefix: "User principal name starts with",
    displayNamePrefix: "Display name starts with",
    createdAfter: "Created on or after",
    createdBefore: "Created on or before",
    group: "Members of group",
    administrativeUnit: "Members of administrative unit",
  };

  /** Who started or cancelled an export (the job's `caller`, `cancelledBy`: {kind, id, name}),
   * in words: {words, id, brief}, the id shown apart as code; null for a job that records none.
   * Names come from tokens: they only ever reach the page as text. */
  function callerParts(caller) {
    if (!caller || typeof caller !== "object" || typeof caller.kind !== "string") return null;
    const id = typeof caller.id === "string" && caller.id !== "" ? caller.id : null;
    const name = typeof caller.name === "string" && caller.name !== "" ? caller.name : null;
    switch (caller.kind) {
      case "principal": // an Entra identity, named by App Service authentication
        return { words: name || "Entra principal", id, brief: name || id || "an Entra principal" };
      case "functionKey": // a key's fingerprint (key:<12 hex digits of its SHA-256>), never the key
        return {
          words: name ? `Function key ${name}` : "Function key",
          id,
          brief: name ? `key ${name}` : id || "a function key",
        };
      case "timer":
        return { words: "The nightly timer", id: null, brief: "the nightly timer" };
      case "anonymous": // a local stack without keys or sign-in
        return { words: "Anonymous (local)", id: null, brief: "anonymous (local)" };
      default:
        return { words: [caller.kind, name].filter(Boolean).join(" "), id, brief: name || id || caller.kind };
    }
  }

  /** The caller for an export's details: "hr-feed (6f1d…)", "Function key key:3f9a1c2b7d4e". */
  function callerDetail(caller) {
    const parts = callerParts(caller);
    if (!parts) return null;
    const id = parts.id ? el("code", { text: parts.id }) : null;
    const withId = caller.kind === "principal" && parts.words !== "Entra principal"
      ? [" (", id, ")"]
      : [" ", id];
    return el("span", { className: "caller", "data-kind": caller.kind },
      parts.words, ...(id ? withId : []));
  }

  /** The caller in a few words, for the list: "by hr-feed", "by key:3f9a1c2b7d4e"; nothing for
   * the timer, which the trigger ("Nightly schedule") names already. */
  function callerBrief(caller) {
    const parts = callerParts(caller);
    if (!parts || caller.kind === "timer") return null;
    const full = parts.id ? `${parts.words} ${parts.id}` : parts.words;
    return el("span", { className: "caller-brief", title: `Started by ${full}` }, `by ${parts.brief}`);
  }

  function statusWords(status) {
    return STATUS_WORDS[status] || String(status);
  }

  function statusBadge(status) {
    const known = Object.hasOwn(STATUS_WORDS, status) ? status : "queued";
    return el("span", { className: `status status-${known}`, "data-status": status },
      icon(known), el("span", { className: "status-text", text: statusWords(status) }));
  }

  const numberFormat = new Intl.NumberFormat();
  const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
  const timeFormat = new Intl.DateTimeFormat(undefined, { timeStyle: "short" });

  function count(value) {
    return typeof value === "number" ? numberFormat.format(value) : null;
  }

  /** An em dash that reads as "none" (or `words`) to a screen reader. */
  function nothing(words) {
    return el("span", { className: "muted" },
      el("span", { "aria-hidden": "true", text: "—" }),
      el("span", { className: "visually-hidden", text: words || "none" }));
  }

  function when(iso) {
    if (!iso) return null;
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return el("span", { text: iso });
    return el("time", { datetime: iso, title: iso, text: dateFormat.format(date) });
  }

  function timeLeft(iso) {
    const at = Date.parse(iso || "");
    if (Number.isNaN(at)) return null;
    const seconds = (at - Date.now()) / 1000;
    if (seconds < 60) return "less than a minute left";
    const minutes = Math.round(seconds / 60);
    if (minutes < 60) return `about ${minutes} min left`;
    const hours = Math.floor(minutes / 60);
    return `about ${hours} h ${minutes % 60} min left`;
  }

  /** Seconds as a person reads them: 45 s, 13 min, 1 h 05 min, 2 d 7 h. */
  function duration(seconds) {
    const whole = Math.max(Math.round(seconds), 0);
    if (whole < 90) return `${whole} s`;
    const minutes = Math.round(whole / 60);
    if (minutes < 90) return `${minutes} min`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `${hours} h ${String(minutes % 60).padStart(2, "0")} min`;
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
  }

  /** The estimate's expected duration in words ("about 13 min"), or null. */
  function expectedDuration(estimate) {
    const seconds = estimate && typeof estimate === "object" ? estimate.durationSeconds : null;
    return typeof seconds === "number" && Number.isFinite(seconds) ? `about ${duration(seconds)}` : null;
  }

  /** Progress while queued or running: a bar (usersWritten of estimatedTotal) and the ETA. */
  function progressFigures(job) {
    const written = typeof job.usersWritten === "number" ? job.usersWritten : 0;
    const total = typeof job.estimatedTotal === "number" && job.estimatedTotal > 0
      ? job.estimatedTotal
      : null;
    const ratio = total ? Math.min(written / total, job.status === "running" ? 0.99 : 1) : null;
    const percent = ratio === null ? null : Math.floor(ratio * 100);
    const eta = job.status === "running" ? timeLeft(job.estimatedCompletionAt) : null;
    return { written, total, percent, eta };
  }

  function progressBar(job, label) {
    const { written, total, percent } = progressFigures(job);
    const bar = el("progress", { max: "100", "aria-label": label });
    if (percent !== null) {
      bar.value = percent;
      bar.setAttribute("aria-valuetext", `${percent}%, ${count(written)} of ${count(total)} users`);
    } else {
      bar.setAttribute("aria-valuetext", `${count(written)} users so far`);
    }
    return bar;
  }

  function progressCell(job) {
    if (job.status === "queued") {
      const place = typeof job.queuePosition === "number" ? ` · place ${count(job.queuePosition)} in the queue` : "";
      return el("span", { className: "progress-text", text: `Waiting to start${place}` });
    }
    if (job.status === "estimated") {
      const took = expectedDuration(job.estimate);
      return el("span", { className: "progress-text", text: took ? `Would take ${took}` : "Estimate only" });
    }
    if (job.status !== "running") return null;
    const { written, percent, eta } = progressFigures(job);
    const done = percent !== null ? `${percent}%` : `${count(written)} users`;
    const words = [done, eta].filter(Boolean).join(" · ");
    return el("div", { className: "progress" },
      progressBar(job, `Progress of ${job.fileName || job.id}`),
      el("span", { className: "progress-text", text: words }));
  }

  /** Replaces a container's children; keeps keyboard focus on the equivalent element. */
  function replaceKeepingFocus(container, children) {
    const active = document.activeElement;
    const key = active && container.contains(active) ? active.getAttribute("data-focus-key") : null;
    container.replaceChildren(...children);
    if (key) {
      const again = container.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
      if (again) again.focus();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Alerts and announcements.

  let alertSource = null;

  function showAlert(message, source) {
    alertSource = source || "action";
    if ($("alert-text").textContent !== message) $("alert-text").textContent = message;
    $("alert").hidden = false;
  }

  function clearAlert(source) {
    if (source && alertSource !== source) return;
    $("alert").hidden = true;
    $("alert-text").textContent = "";
    alertSource = null;
  }

  function announce(message) {
    const region = $("announcer");
    region.textContent = "";
    // A fresh text node after a moment, so the same words are read again.
    setTimeout(() => {
      region.textContent = message;
    }, 50);
  }

  // ---------------------------------------------------------------------------------------
  // Polling: one task at a time, paced by the API, paused while the tab is hidden.

  const poller = {
    task: null,
    timer: null,
    generation: 0, // a new one for each task: answers for an older task are dropped
    inFlight: -1, // the generation whose call is out, so one task never runs twice at once
    failures: 0,
    start(task) {
      this.stop();
      this.task = task;
      this.tick();
    },
    stop() {
      clearTimeout(this.timer);
      this.timer = null;
      this.task = null;
      this.generation += 1;
      this.failures = 0;
    },
    async tick() {
      const { task, generation } = this;
      if (!task || this.inFlight === generation) return;
      clearTimeout(this.timer);
      this.timer = null;
      this.inFlight = generation;
      let next = null;
      try {
        next = await task();
        if (generation !== this.generation) return;
        this.failures = 0;
        clearAlert("poll");
      } catch (error) {
        if (generation !== this.generation) return;
        this.failures += 1;
        showAlert(error.message, "poll");
        // Not found: nothing to wait for. Otherwise back off, up to a minute.
        next = error.status === 404
          ? null
          : Math.min(MAX_BACKOFF, DEFAULT_RETRY_AFTER * 2 ** (this.failures - 1));
      } finally {
        if (this.inFlight === generation) this.inFlight = -1;
      }
      if (next === null || next === undefined || document.hidden) return;
      this.timer = setTimeout(() => this.tick(), next * 1000);
    },
  };

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(poller.timer);
      poller.timer = null;
    } else if (poller.task && !poller.timer) {
      poller.tick();
    }
  });

  // The list has no Retry-After of its own: it follows the pace the API last asked of status
  // polls (Retry-After), between 2 and 10 s, 3 s until the page has seen one.
  let retryAfterSeen = null;

  function noteRetryAfter(seconds) {
    if (typeof seconds === "number" && seconds >= 0) retryAfterSeen = seconds;
  }

  // ---------------------------------------------------------------------------------------
  // Views and the router: #/ (list), #/new (form), #/exports/{id} (one export),
  // #/latest/{series} (a series' newest export with files).

  let currentView = null;

  function showView(name, title, focusHeading) {
    for (const id of ["view-list", "view-job", "view-new"]) $(id).hidden = id !== `view-${name}`;
    document.title = `${title} - User export`;
    const crumb = $("crumb-results");
    if (name === "list") crumb.setAttribute("aria-current", "page");
    else crumb.removeAttribute("aria-current");
    if (focusHeading) {
      const heading = document.querySelector(`#view-${name} h1`);
      if (heading) heading.focus();
    }
  }

  function route(focus) {
    const hash = location.hash || "#/";
    const job = /^#\/exports\/([^/?#]+)$/.exec(hash);
    const latest = /^#\/latest\/([^/?#]+)$/.exec(hash);
    poller.stop();
    clearAlert();
    if (job) openJob(decodeURIComponent(job[1]), focus);
    else if (latest) openLatest(decodeURIComponent(latest[1]), focus);
    else if (hash === "#/new") openForm(focus);
    else openList(focus);
  }

  // ---------------------------------------------------------------------------------------
  // The list.

  const list = {
    pageSize: 25,
    pages: [], // URLs of the pages visited: the last is shown
    nextLink: null,
    statuses: new Map(), // id -> status last seen, to announce changes
  };

  function firstPageUrl() {
    const url = apiUrl("exports");
    url.searchParams.set("pageSize", String(list.pageSize));
    return url;
  }

  function openList(focus) {
    currentView = "list";
    showView("list", "Bulk operation results", focus);
    if (list.pages.length === 0) list.pages = [firstPageUrl()];
    poller.start(loadList);
  }

  async function loadList() {
    const url = list.pages[list.pages.length - 1];
    const { data } = await callApi("GET", url);
    // An answer for a page no longer shown (the pager moved meanwhile) is dropped.
    if (currentView !== "list" || url !== list.pages[list.pages.length - 1]) return null;
    const jobs = Array.isArray(data && data.value) ? data.value : [];
    renderList(jobs, data && data.nextLink);
    $("list-updated").textContent = `Updated ${timeFormat.format(new Date())}.`;
    const active = jobs.some((job) => !FINAL.has(job.status));
    return active ? Math.max(2, Math.min(retryAfterSeen ?? 3, 10)) : IDLE_LIST_POLL;
  }

  function renderList(jobs, nextLink) {
    const rows = jobs.map((job) => {
      const seen = list.statuses.get(job.id);
      if (seen && seen !== job.status) {
        announce(`${job.fileName || job.id}: ${statusWords(job.status)}.`);
      }
      list.statuses.set(job.id, job.status);
      const users = job.status === "running" || job.userCount === null || job.userCount === undefined
        ? job.usersWritten : job.userCount;
      // A dry run wrote nobody: its users are the count it would export.
      const usersCell = job.status === "estimated" && typeof job.estimatedTotal === "number"
        ? el("span", { title: "estimated" },
          el("span", { "aria-hidden": "true", text: "≈ " }),
          el("span", { className: "visually-hidden", text: "about " }),
          count(job.estimatedTotal))
        : count(users) || nothing();
      const by = callerBrief(job.caller);
      return el("tr", { "data-id": job.id, "data-status": job.status },
        el("td", null, el("a", {
          href: `#/exports/${encodeURIComponent(job.id)}`,
          "data-focus-key": `job-${job.id}`,
          text: job.fileName || job.id,
        })),
        el("td", null, statusBadge(job.status)),
        el("td", null, TRIGGER_WORDS[job.trigger] || job.trigger || "",
          ...(by ? [" ", by] : [])),
        el("td", null, seriesTag(job) || nothing("no series")),
        el("td", null, when(job.startedAt) || nothing("not started")),
        el("td", null, when(job.finishedAt) || nothing("not finished")),
        el("td", { className: "num" }, usersCell),
        el("td", { className: "num" }, count(job.errorCount) || nothing()),
        el("td", null, progressCell(job)),
      );
    });
    replaceKeepingFocus($("exports-body"), rows);
    const firstPage = list.pages.length === 1;
    $("exports-table").parentElement.hidden = jobs.length === 0 && firstPage;
    $("list-empty").hidden = !(jobs.length === 0 && firstPage);
    list.nextLink = nextLink || null;
    $("next-page").disabled = !list.nextLink;
    $("prev-page").disabled = firstPage;
    $("first-page").disabled = firstPage;
    $("page-number").textContent = `Page ${list.pages.length}`;
  }

  function goToPage(pages, focusId) {
    list.pages = pages;
    poller.start(loadList);
    // Keep focus on the pager when the button pressed becomes disabled.
    const button = $(focusId);
    if (button && button.disabled) $("page-size").focus();
  }

  $("next-page").addEventListener("click", () => {
    if (list.nextLink) goToPage([...list.pages, followUrl(list.nextLink)], "next-page");
  });
  $("prev-page").addEventListener("click", () => {
    if (list.pages.length > 1) goToPage(list.pages.slice(0, -1), "prev-page");
  });
  $("first-page").addEventListener("click", () => goToPage([firstPageUrl()], "first-page"));
  $("page-size").addEventListener("change", (event) => {
    list.pageSize = Number(event.target.value);
    goToPage([firstPageUrl()], "page-size");
  });
  $("refresh").addEventListener("click", () => {
    poller.start(loadList);
    announce("Refreshing the list.");
  });

  // ---------------------------------------------------------------------------------------
  // One export.

  // `key` says what the view shows: `export:<id>`, or `latest:<series>` (whichever export is
  // the series' newest with files); `id` is the export shown (the one Cancel acts on).
  const jobView = { key: null, id: null, job: null };

  function jobUrl(id) {
    return apiUrl(`exports/${encodeURIComponent(id)}`);
  }

  function latestUrl(series) {
    const url = apiUrl("exports/latest");
    url.searchParams.set("series", series);
    return url;
  }

  function openJob(id, focus) {
    currentView = "job";
    const key = `export:${id}`;
    if (jobView.key !== key) {
      jobView.key = key;
      jobView.id = id;
      jobView.job = null;
      clearJob(`Loading export ${id}…`);
    }
    $("job-latest").hidden = true;
    showView("job", "Export", focus);
    poller.start(() => loadJob(id, key));
  }

  function openLatest(series, focus) {
    currentView = "job";
    const key = `latest:${series}`;
    if (jobView.key !== key) {
      jobView.key = key;
      jobView.id = null;
      jobView.job = null;
      clearJob(`Loading the newest export of series ${series}…`);
    }
    showView("job", `Latest of ${series}`, focus);
    poller.start(() => loadLatest(series, key));
  }

  function clearJob(loading) {
    $("job-heading").textContent = "Export";
    $("job-status-line").replaceChildren(el("span", { className: "muted", text: loading }));
    const parts = ["job-reason", "job-progress", "job-estimate", "download-csv", "download-changes",
      "download-errors", "cancel-export", "urls-expire", "job-delta", "job-latest"];
    for (const hidden of parts) $(hidden).hidden = true;
    for (const box of ["job-details", "job-filter", "job-columns", "delta-details"]) {
      $(box).replaceChildren();
    }
  }

  async function loadJob(id, key) {
    let answer;
    try {
      answer = await callApi("GET", jobUrl(id));
    } catch (error) {
      if (error.status === 404 && currentView === "job" && jobView.key === key) {
        $("job-heading").textContent = "Export not found";
        $("job-status-line").replaceChildren(el("span", { text: `There is no export with id ${id}.` }));
      }
      throw error;
    }
    if (currentView !== "job" || jobView.key !== key) return null;
    noteRetryAfter(answer.retryAfter);
    renderJob(answer.data);
    if (FINAL.has(answer.data.status)) return null;
    return Math.max(1, Math.min(answer.retryAfter ?? DEFAULT_RETRY_AFTER, 60));
  }

  /** A series' newest export with files: shown as its own view shows it, with a note naming
   * the series; asked again now and then, as a newer run may finish. */
  async function loadLatest(series, key) {
    let answer;
    try {
      answer = await callApi("GET", latestUrl(series));
    } catch (error) {
      if (error.status === 404 && currentView === "job" && jobView.key === key) {
        clearJob(`Series ${series} has no export that succeeded (or completed with errors) yet.`);
        $("job-heading").textContent = `No export of series ${series} yet`;
      }
      throw error;
    }
    if (currentView !== "job" || jobView.key !== key) return null;
    const job = answer.data || {};
    jobView.id = job.id;
    renderJob(job);
    document.title = `Latest of ${series} - User export`;
    const note = $("job-latest");
    note.replaceChildren(`The newest export of series ${series} that has files. `,
      el("a", { href: `#/exports/${encodeURIComponent(job.id)}`, text: `Open export ${job.id}` }),
      " for a link to this one export.");
    note.hidden = false;
    return IDLE_LIST_POLL;
  }

  function detail(term, value) {
    if (value === null || value === undefined || value === "") return [];
    const node = typeof value === "string" ? el("span", { text: value }) : value;
    return [el("dt", { text: term }), el("dd", null, node)];
  }

  function renderJob(job) {
    const before = jobView.job;
    jobView.job = job;
    if (before && before.status !== job.status) {
      announce(`Export ${statusWords(job.status).toLowerCase()}.`);
    }
    const name = job.fileName || job.id;
    $("job-heading").textContent = name;
    document.title = `${name} - User export`;

    const line = [statusBadge(job.status)];
    line.push(el("span", { className: "muted", text: TRIGGER_WORDS[job.trigger] || job.trigger || "" }));
    if (job.startedAt) line.push(el("span", { className: "muted" }, "Started ", when(job.startedAt)));
    if (job.finishedAt) line.push(el("span", { className: "muted" }, "Finished ", when(job.finishedAt)));
    $("job-status-line").replaceChildren(...line);

    renderReason(job);
    renderProgress(job);
    renderEstimate(job);
    renderDelta(job);

    const csv = $("download-csv");
    const changes = $("download-changes");
    const errors = $("download-errors");
    // A delta run of changes has a changes file, and the full CSV only with `snapshot`.
    const files = (job.status === "succeeded" || job.status === "completedWithErrors") &&
      Boolean(job.downloadUrl || job.changesUrl);
    csv.hidden = !(files && job.downloadUrl);
    changes.hidden = !(files && job.changesUrl);
    errors.hidden = !(files && job.errorsUrl);
    csv.classList.toggle("primary", Boolean(job.downloadUrl));
    changes.classList.toggle("primary", !job.downloadUrl);
    if (files) {
      // SAS URLs on blob storage: the SAS sets Content-Disposition, so a plain link downloads.
      for (const [link, url] of [[csv, job.downloadUrl], [changes, job.changesUrl]]) {
        if (!url) continue;
        link.href = url;
        link.setAttribute("rel", "noopener noreferrer");
      }
      if (job.errorsUrl) {
        errors.href = job.errorsUrl;
        errors.setAttribute("rel", "noopener noreferrer");
        const n = typeof job.errorCount === "number" ? job.errorCount : null;
        errors.lastChild.textContent = n === null
          ? "Download errors file"
          : `Download errors file (${count(n)})`;
      }
    }
    const expires = $("urls-expire");
    expires.hidden = !(files && job.urlsExpireAt);
    if (files && job.urlsExpireAt) {
      expires.replaceChildren("The download links work until ", when(job.urlsExpireAt),
        "; opening this export again makes new ones.");
    }
    $("cancel-export").hidden = !(job.status === "queued" || job.status === "running");

    const users = job.status === "running" || job.userCount === null || job.userCount === undefined
      ? job.usersWritten : job.userCount;
    const partitions = typeof job.partitions === "number"
      ? (typeof job.partitionsDone === "number" && !FINAL.has(job.status)
        ? `${count(job.partitionsDone)} of ${count(job.partitions)} done`
        : count(job.partitions))
      : null;
    const dryRun = job.dryRun === true;
    replaceKeepingFocus($("job-details"), [
      ...detail("Export ID", el("code", { text: job.id })),
      ...detail("Status", statusWords(job.status)),
      ...detail("Place in the queue", job.status === "queued" && typeof job.queuePosition === "number"
        ? `${count(job.queuePosition)}: large exports run a few at a time, in order`
        : null),
      ...detail("Trigger", TRIGGER_WORDS[job.trigger] || job.trigger),
      ...detail("Started by", callerDetail(job.caller)),
      ...detail("Cancelled by", callerDetail(job.cancelledBy)),
      ...detail("Requested", when(job.createdAt)),
      ...detail("Started", when(job.startedAt) || nothing("not started")),
      ...detail("Finished", when(job.finishedAt) || nothing("not finished")),
      ...detail("Dry run", dryRun ? "Yes: planned and estimated only, nothing exported" : null),
      ...detail("Series", job.series
        ? el("a", { href: `#/latest/${encodeURIComponent(job.series)}`, title: "The series' newest export", text: job.series })
        : null),
      ...detail("Mode", job.mode === "delta" ? "Delta: the changes since the series' last run" : (job.series ? "Full" : null)),
      ...detail("Snapshot", job.mode === "delta"
        ? (job.snapshot ? "Yes: the full CSV too" : "No: the changes file only (runs of changes)")
        : null),
      ...detail("Fewer lookups", job.fewerLookups === true
        ? "Yes: only users the registration report lists with a phone or email method"
        : null),
      ...detail("Registration report", job.registrationReportTime
        ? el("span", null, "As of ", when(job.registrationReportTime), " (it lags by up to a few hours)")
        : null),
      ...(dryRun ? [] : [
        ...detail(FINAL.has(job.status) ? "Users exported" : "Users so far", count(users) || nothing()),
        ...detail("Errors", count(job.errorCount) || nothing()),
      ]),
      ...detail("Estimated total", count(job.estimatedTotal)),
      ...detail("Partitions", partitions),
      ...detail("Plan note", job.planNote),
      ...detail("Graph requests (estimate)", estimateWords(job.estimate)),
      ...detail("File name", job.fileName),
      ...detail("Formula guard", job.formulaGuard === false ? "Off" : "On"),
    ]);

    const filter = job.filter && typeof job.filter === "object" ? Object.entries(job.filter) : [];
    $("job-filter").replaceChildren(...(filter.length
      ? filter.flatMap(([key, value]) => detail(FILTER_LABELS[key] || key, filterValue(key, value)))
      : [el("dt", { text: "None" }), el("dd", { text: "Every user of the tenant." })]));

    const columns = Array.isArray(job.columns) ? job.columns : [];
    $("columns-heading").textContent = `Columns (${columns.length})`;
    $("job-columns").replaceChildren(...columns.map((column) => el("li", { text: column })));
  }

  /** A series name in the list, a link to its newest export; marked when in delta mode. */
  function seriesTag(job) {
    if (typeof job.series !== "string" || job.series === "") return null;
    const delta = job.mode === "delta";
    return el("a", {
      href: `#/latest/${encodeURIComponent(job.series)}`,
      className: delta ? "series-tag delta" : "series-tag",
      title: delta ? "Delta series: its newest export" : "Its newest export",
      "data-focus-key": `series-${job.id}`,
      text: job.series,
    }, delta ? el("span", { className: "visually-hidden", text: " (delta)" }) : null);
  }

  const DELTA_KIND_WORDS = {
    full: "Full run: every user (the series' new starting point)",
    changes: "Changes since the series' last run",
  };

  function exportLink(id) {
    return el("a", { href: `#/exports/${encodeURIComponent(id)}` }, el("code", { text: id }));
  }

  /** A delta export's run: full or changes, why, since which run, and what changed. */
  function renderDelta(job) {
    const card = $("job-delta");
    card.hidden = job.mode !== "delta";
    if (card.hidden) return;
    const delta = job.delta && typeof job.delta === "object" ? job.delta : {};
    const counted = ["added", "updated", "removed"].filter((key) => typeof delta[key] === "number");
    const counts = $("delta-counts");
    counts.hidden = counted.length === 0;
    counts.replaceChildren(...counted.map((key) => el("div", { className: "delta-count", "data-count": key },
      el("strong", { text: count(delta[key]) }),
      el("span", { text: key[0].toUpperCase() + key.slice(1) }))));
    const source = delta.authenticationColumnsFrom && typeof delta.authenticationColumnsFrom === "object"
      ? delta.authenticationColumnsFrom
      : null;
    const carried = source && typeof source.jobId === "string"
      ? el("span", null, source.jobId === job.id ? "This export" : exportLink(source.jobId),
        source.at ? ", " : "", when(source.at))
      : null;
    replaceKeepingFocus($("delta-details"), [
      ...detail("Run", DELTA_KIND_WORDS[delta.kind] || delta.kind || "Not planned yet"),
      ...detail("Why", delta.reason),
      ...detail(delta.kind === "changes" ? "Since" : "Previous run",
        typeof delta.since === "string" ? exportLink(delta.since) : null),
      ...detail("Authentication columns from", carried),
    ]);
  }

  // The plan's estimate: requests for listing and lookups, resource units, expected duration.
  function estimateWords(estimate) {
    if (!estimate || typeof estimate !== "object") return null;
    const n = (key) => (typeof estimate[key] === "number" ? count(estimate[key]) : "?");
    const took = expectedDuration(estimate);
    const byId = typeof estimate.signInRequests === "number"
      ? `${count(estimate.signInRequests)} sign-in reads by id, ` : "";
    const report = typeof estimate.reportRequests === "number"
      ? `${count(estimate.reportRequests)} registration report pages, ` : "";
    return `${n("listingRequests")} pages of up to ${n("pageSize")} users, ` + byId + report +
      `${n("lookupRequests")} lookups, ${n("planningRequests")} to plan; ` +
      `${n("resourceUnits")} resource units` + (took ? `; ${took}` : "");
  }

  const PACE_WORDS = {
    learned: "the pace learned from this tenant's recent Graph answers",
    default: "the documented default pace (nothing learned from this tenant yet)",
  };
  const AUTHENTICATION_RATE_WORDS = {
    documented: "Graph's documented limit, assumed",
    learnt: "learnt from this tenant's Graph answers",
    probed: "measured by the plan's probe",
  };

  /** The pace the estimate assumed for authentication lookups and report pages, or null. */
  function authenticationPace(estimate) {
    const rate = estimate.authenticationRate;
    if (typeof rate !== "number") return null;
    const source = AUTHENTICATION_RATE_WORDS[estimate.authenticationRateSource];
    const shown = rate >= 10 ? numberFormat.format(Math.round(rate)) : numberFormat.format(rate);
    return `${shown} requests per 10 s` + (source ? ` (${source})` : "");
  }

  /** A dry run's answer: how many users, how long, and what it costs in Graph requests. */
  function renderEstimate(job) {
    const panel = $("job-estimate");
    const show = job.status === "estimated";
    panel.hidden = !show;
    if (!show) return;
    const estimate = job.estimate && typeof job.estimate === "object" ? job.estimate : {};
    const number = (key) => (typeof estimate[key] === "number" ? estimate[key] : null);
    const users = typeof job.estimatedTotal === "number"
      ? `${count(job.estimatedTotal)} users`
      : "The users (Graph could not count them)";
    const took = expectedDuration(estimate);
    $("estimate-summary").replaceChildren(
      el("strong", { text: users }),
      took ? ` would take ${took} to export.` : " would be exported; no duration was estimated.");
    const requests = ["planningRequests", "listingRequests", "signInRequests", "lookupRequests", "reportRequests"]
      .map(number).filter((value) => value !== null);
    const partitions = number("partitions") ?? (typeof job.partitions === "number" ? job.partitions : null);
    replaceKeepingFocus($("estimate-details"), [
      ...detail("Expected duration", took),
      ...detail("Partitions", count(partitions)),
      ...detail("Graph requests", requests.length ? count(requests.reduce((a, b) => a + b, 0)) : null),
      ...detail("Of which", requests.length
        ? `${count(number("listingRequests")) ?? "?"} listing pages, ` +
          (number("signInRequests") !== null ? `${count(number("signInRequests"))} sign-in reads by id, ` : "") +
          (number("reportRequests") !== null ? `${count(number("reportRequests"))} registration report pages, ` : "") +
          `${count(number("lookupRequests")) ?? "?"} lookups, ` +
          `${count(number("planningRequests")) ?? "?"} to plan`
        : null),
      ...detail("Resource units", count(number("resourceUnits"))),
      ...detail("Pace", PACE_WORDS[estimate.paceSource] || null),
      ...detail("Authentication pace", authenticationPace(estimate)),
    ]);
  }

  function filterValue(key, value) {
    if (key === "accountEnabled") return value ? "Yes (enabled)" : "No (disabled)";
    return String(value);
  }

  function renderReason(job) {
    const box = $("job-reason");
    let title = null;
    let text = null;
    let warning = false;
    if (job.status === "failed") {
      title = "The export failed";
      text = job.reason || "No reason was recorded.";
    } else if (job.status === "cancelled") {
      title = "The export was cancelled";
      text = job.reason || "No file was written.";
      warning = true;
    } else if (job.status === "estimated" && job.reason) {
      title = "Estimated, with a warning";
      text = job.reason;
      warning = true;
    } else if (job.status === "completedWithErrors") {
      title = "Completed with errors";
      text = job.reason || "Some users could not be read in full: the errors file lists them.";
      warning = true;
    } else if (!FINAL.has(job.status) && job.lastError) {
      title = job.failingSince ? "Waiting out a problem" : "Last problem";
      text = job.lastError;
      warning = true;
    }
    box.hidden = title === null;
    if (title === null) return;
    box.classList.toggle("message-warning", warning);
    const symbol = job.status === "failed" || job.status === "cancelled"
      ? job.status
      : "completedWithErrors";
    box.replaceChildren(icon(symbol),
      el("div", null, el("strong", { text: title }),
        el("p", { id: "job-reason-text", text }),
        job.failingSince && !FINAL.has(job.status)
          ? el("p", null, "Since ", when(job.failingSince), "; the export goes on by itself once it passes.")
          : null));
  }

  function renderProgress(job) {
    const panel = $("job-progress");
    const show = job.status === "queued" || job.status === "running";
    panel.hidden = !show;
    if (!show) return;
    const { written, total, percent, eta } = progressFigures(job);
    const left = job.status === "queued"
      ? (typeof job.queuePosition === "number"
        ? `Waiting for its turn: place ${count(job.queuePosition)} in the queue.`
        : "Waiting for a worker to start it.")
      : percent !== null
        ? `${percent}% of about ${count(total)} users`
        : "Counting the users…";
    panel.replaceChildren(
      el("div", { className: "progress-figures" },
        el("span", null, el("strong", { text: count(written) }), " users written"),
        el("span", { text: left })),
      progressBar(job, "Export progress"),
      el("div", { className: "progress-figures" },
        el("span", {
          text: eta
            ? `${eta} (done around ${timeFormat.format(new Date(job.estimatedCompletionAt))})`
            : " ",
        }),
        typeof job.partitions === "number" && typeof job.partitionsDone === "number"
          ? el("span", { text: `${count(job.partitionsDone)} of ${count(job.partitions)} partitions done` })
          : null),
    );
  }

  // Cancelling: a confirm step in a modal dialog (Escape or "Keep running" closes it).
  $("cancel-export").addEventListener("click", () => {
    $("cancel-confirm").disabled = false;
    $("cancel-dialog").showModal();
    $("cancel-keep").focus();
  });
  $("cancel-keep").addEventListener("click", () => $("cancel-dialog").close());
  $("cancel-confirm").addEventListener("click", async () => {
    const id = jobView.id;
    const dialog = $("cancel-dialog");
    $("cancel-confirm").disabled = true;
    try {
      const { data } = await callApi("DELETE", jobUrl(id));
      dialog.close();
      clearAlert();
      if (currentView === "job" && jobView.id === id && data && data.status) {
        renderJob(data);
        if (FINAL.has(data.status)) poller.stop();
      }
      announce("The export was cancelled.");
      $("job-heading").focus();
    } catch (error) {
      dialog.close();
      showAlert(error.message, "action");
      if (currentView === "job" && jobView.id === id) poller.start(() => loadJob(id));
    }
  });

  // ---------------------------------------------------------------------------------------
  // The form.

  const form = {
    catalogue: null, // [{name, default, presets, permission}]
    presets: {}, // preset name -> its columns, in its order
    loading: null,
    lastBody: null,
    lastKey: null,
  };

  function openForm(focus) {
    currentView = "new";
    showView("new", "New export", focus);
    if (!form.catalogue) loadCatalogue();
  }

  async function loadCatalogue() {
    if (form.loading) return form.loading;
    $("columns-count").textContent = "Loading the column catalogue…";
    form.loading = (async () => {
      try {
        const { data } = await callApi("GET", apiUrl("columns"));
        const value = Array.isArray(data && data.value) ? data.value : [];
        form.catalogue = value.filter((c) => c && typeof c.name === "string");
        form.presets = data && data.presets && typeof data.presets === "object" ? data.presets : {};
        renderCatalogue();
      } catch (error) {
        $("columns-count").textContent = "The column catalogue could not be loaded.";
        showAlert(error.message, "action");
      } finally {
        form.loading = null;
      }
    })();
    return form.loading;
  }

  function renderCatalogue() {
    const items = form.catalogue.map((column, index) => {
      const id = `col-${index}`;
      const box = el("input", { type: "checkbox", id, value: column.name, name: "columns" });
      box.checked = Boolean(column.default);
      if (column.default) box.setAttribute("aria-describedby", "default-tag-desc");
      return el("li", { "data-name": column.name.toLowerCase() },
        box,
        el("label", { for: id, text: column.name }),
        column.default
          ? el("span", { className: "default-tag", "aria-hidden": "true", text: "Default" })
          : null);
    });
    $("column-list").replaceChildren(...items);
    applySearch();
  }

  function columnBoxes() {
    return [...$("column-list").querySelectorAll("input[type=checkbox]")];
  }

  function shownBoxes() {
    return columnBoxes().filter((box) => !box.closest("li").hidden);
  }

  function updateCount() {
    const boxes = columnBoxes();
    const chosen = boxes.filter((box) => box.checked).length;
    const shown = shownBoxes().length;
    const search = $("column-search").value.trim();
    $("columns-count").textContent = `${chosen} of ${boxes.length} columns selected` +
      (search ? ` · ${shown} match "${search}"` : "");
  }

  function applySearch() {
    const query = $("column-search").value.trim().toLowerCase();
    let shown = 0;
    for (const item of $("column-list").querySelectorAll("li[data-name]")) {
      item.hidden = query !== "" && !item.getAttribute("data-name").includes(query);
      if (!item.hidden) shown += 1;
    }
    $("columns-none").hidden = shown > 0 || !form.catalogue;
    updateCount();
  }

  $("column-search").addEventListener("input", applySearch);
  $("column-list").addEventListener("change", () => {
    updateCount();
    clearFieldError("columns");
  });
  $("select-all").addEventListener("click", () => {
    for (const box of shownBoxes()) box.checked = true;
    updateCount();
  });
  $("select-none").addEventListener("click", () => {
    for (const box of shownBoxes()) box.checked = false;
    updateCount();
  });
  // The admin center's 25, its "Download users (Preview)" set (the `preview` preset), or the
  // MFA registration columns (the `mfa` preset: who the user is, then the registration report).
  const PRESET_BUTTONS = [
    ["select-defaults", "adminCenter"],
    ["select-preview", "preview"],
    ["select-mfa", "mfa"],
  ];
  for (const [button, preset] of PRESET_BUTTONS) {
    $(button).addEventListener("click", () => {
      if (!form.catalogue) return;
      columnBoxes().forEach((box, index) => {
        const presets = form.catalogue[index].presets;
        box.checked = Array.isArray(presets) ? presets.includes(preset) : Boolean(form.catalogue[index].default);
      });
      updateCount();
    });
  }

  // Field errors: shown next to the field, tied to it with aria-describedby and aria-invalid.

  function fieldTarget(field) {
    if (["series", "mode", "snapshot", "fewerLookups"].includes(field)) {
      return { input: $(`f-${field}`), error: $(`f-${field}-error`) };
    }
    if (field === "columns" || /^columns\[\d+\]$/.test(field || "")) {
      return { input: $("column-search"), error: $("columns-error"), fieldset: $("columns-fieldset") };
    }
    if (field === "fileName") return { input: $("f-fileName"), error: $("f-fileName-error") };
    const filterKey = /^filter\.([A-Za-z]+)$/.exec(field || "");
    if (filterKey && $(`f-${filterKey[1]}`)) {
      return { input: $(`f-${filterKey[1]}`), error: $(`f-${filterKey[1]}-error`) };
    }
    return null;
  }

  function showFieldError(field, message) {
    const target = fieldTarget(field);
    if (!target) {
      $("form-error-text").textContent = message;
      $("form-error").hidden = false;
      return null;
    }
    target.error.textContent = message;
    target.error.hidden = false;
    if (field === "columns" || field.startsWith("columns[")) {
      target.fieldset.setAttribute("aria-invalid", "true");
    } else {
      target.input.setAttribute("aria-invalid", "true");
      const described = (target.input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
      if (!described.includes(target.error.id)) described.push(target.error.id);
      target.input.setAttribute("aria-describedby", described.join(" "));
    }
    return target.input;
  }

  function clearFieldError(field) {
    const target = fieldTarget(field);
    if (!target) return;
    target.error.hidden = true;
    target.error.textContent = "";
    (target.fieldset || target.input).removeAttribute("aria-invalid");
  }

  function clearFormErrors() {
    $("form-error").hidden = true;
    $("form-error-text").textContent = "";
    for (const error of $("export-form").querySelectorAll(".field-error")) {
      error.hidden = true;
      error.textContent = "";
    }
    for (const invalid of $("export-form").querySelectorAll("[aria-invalid]")) {
      invalid.removeAttribute("aria-invalid");
    }
  }

  for (const input of $("export-form").querySelectorAll("[data-filter], #f-fileName")) {
    input.addEventListener("input", () => {
      clearFieldError(input.id === "f-fileName" ? "fileName" : `filter.${input.getAttribute("data-filter")}`);
    });
  }
  for (const field of ["series", "mode", "snapshot", "fewerLookups"]) {
    $(`f-${field}`).addEventListener(field === "series" ? "input" : "change", () => clearFieldError(field));
  }

  // A snapshot is for delta mode only: the box is off and disabled in full mode. Fewer
  // lookups is for full mode only: off and disabled in delta mode.
  function syncSnapshot() {
    const delta = $("f-mode").value === "delta";
    $("f-snapshot").disabled = !delta;
    if (!delta) $("f-snapshot").checked = false;
    $("f-fewerLookups").disabled = delta;
    if (delta) $("f-fewerLookups").checked = false;
  }
  $("f-mode").addEventListener("change", () => {
    syncSnapshot();
    clearFieldError("snapshot");
    clearFieldError("fewerLookups");
  });

  // A preset's columns, chosen as a whole, go in its order, as `"columns": "preview"` would.
  function presetOrder(columns) {
    const chosen = new Set(columns);
    for (const names of Object.values(form.presets)) {
      if (Array.isArray(names) && names.length === chosen.size && names.every((n) => chosen.has(n))) {
        return names.slice();
      }
    }
    return columns;
  }

  function requestBody() {
    const body = {};
    const problems = [];
    const columns = columnBoxes().filter((box) => box.checked).map((box) => box.value);
    if (!form.catalogue) problems.push(["columns", "The column catalogue has not loaded yet."]);
    else if (columns.length === 0) problems.push(["columns", "Select at least one column."]);
    else body.columns = presetOrder(columns);

    const filter = {};
    for (const input of $("export-form").querySelectorAll("[data-filter]")) {
      const value = input.value.trim();
      if (value === "") continue;
      const key = input.getAttribute("data-filter");
      filter[key] = input.getAttribute("data-kind") === "boolean" ? value === "true" : value;
    }
    if (Object.keys(filter).length) body.filter = filter;

    const fileName = $("f-fileName").value.trim();
    if (fileName !== "") {
      if (!FILE_NAME.test(fileName)) {
        problems.push(["fileName", "Use letters, digits, spaces, dots, dashes and underscores, " +
          "start with a letter or digit, end in .csv (at most 155 characters)."]);
      } else {
        body.fileName = fileName;
      }
    }
    body.formulaGuard = $("f-formulaGuard").checked;

    const series = $("f-series").value.trim();
    if (series !== "") {
      if (!SERIES.test(series)) {
        problems.push(["series", "Use 1 to 63 letters, digits, dashes and underscores, starting " +
          "with a letter or digit."]);
      } else {
        body.series = series;
      }
    }
    if ($("f-mode").value === "delta") {
      body.mode = "delta";
      if ($("f-snapshot").checked) body.snapshot = true;
    } else if ($("f-fewerLookups").checked) {
      body.fewerLookups = true;
    }
    return { body, problems };
  }

  function idempotencyKey(body) {
    // The same request sent again (e.g. after a lost answer) reuses its key: one export.
    const text = JSON.stringify(body);
    if (text !== form.lastBody) {
      form.lastBody = text;
      form.lastKey = window.crypto && crypto.randomUUID
        ? crypto.randomUUID()
        : [...crypto.getRandomValues(new Uint8Array(16))]
          .map((b) => b.toString(16).padStart(2, "0"))
          .join("");
    }
    return form.lastKey;
  }

  $("export-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFormErrors();
    if (!form.catalogue) await loadCatalogue();
    const { body, problems } = requestBody();
    // "Estimate only" sends the same request as a dry run: planned and estimated, not run.
    const dryRun = Boolean(event.submitter && event.submitter.id === "estimate-export");
    if (dryRun) body.dryRun = true;
    if (problems.length) {
      let first = null;
      for (const [field, message] of problems) first = first || showFieldError(field, message);
      (first || $("form-error")).focus();
      return;
    }
    const button = dryRun ? $("estimate-export") : $("start-export");
    const label = button.textContent;
    for (const submit of [$("start-export"), $("estimate-export")]) submit.disabled = true;
    button.textContent = dryRun ? "Estimating…" : "Starting…";
    try {
      const { data } = await callApi("POST", apiUrl("exports"), body, {
        "Idempotency-Key": idempotencyKey(body),
      });
      clearAlert();
      form.lastBody = null;
      resetForm();
      list.pages = []; // the list starts again at its newest page
      announce(dryRun ? "Estimate started." : "Export started.");
      location.hash = `#/exports/${encodeURIComponent(data.id)}`;
    } catch (error) {
      if (error.status === 400 && error.problem) {
        const target = showFieldError(error.problem.field || "", error.problem.detail || error.message);
        (target || $("form-error")).focus();
      } else {
        showAlert(error.message, "action");
      }
    } finally {
      for (const submit of [$("start-export"), $("estimate-export")]) submit.disabled = false;
      button.textContent = label;
    }
  });

  function resetForm() {
    $("export-form").reset();
    syncSnapshot();
    $("column-search").value = "";
    if (form.catalogue) renderCatalogue();
  }

  // ---------------------------------------------------------------------------------------
  // Start.

  for (const slot of document.querySelectorAll(".icon-slot[data-icon]")) {
    slot.replaceWith(icon(slot.getAttribute("data-icon")));
  }
  $("alert-dismiss").addEventListener("click", () => clearAlert());
  document.querySelector(".skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    $("main").focus();
  });
  window.addEventListener("hashchange", () => route(true));
  route(false);
})();
