// Journeymap dashboard: plain JavaScript, no framework, no build step.
// It uses only this server's GraphQL API (HTTP and graphql-transport-ws),
// with the signed-in staff member's tokens, kept in session storage.
"use strict";

(() => {
  const SESSION_KEY = "journeymap.session";
  const WORK_PAGE = 6;
  const $ = (id) => document.getElementById(id);

  const state = {
    session: null, // { accessToken, accessTokenExpiresAt, refreshToken, refreshTokenExpiresAt }
    viewer: null,
    pathways: [],
    refreshTimer: null,
    socket: null,
    cursor: null,
    reconnectDelay: 1000,
    reconnectTimer: null,
    mapTimer: null,
    liveSeen: new Set(),
    workExpanded: false,
  };

  // ---------- small helpers ----------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const can = (scope) => !!state.viewer && state.viewer.scopes.includes(scope);
  const fullName = (p) => (p ? [p.givenName, p.familyName].filter(Boolean).join(" ") : "A patient");
  const number = (n) => (n === null || n === undefined ? "–" : new Intl.NumberFormat().format(n));
  const percent = (r) => (r === null || r === undefined ? "–" : `${Math.round(r * 100)}%`);
  function duration(hours) {
    if (hours === null || hours === undefined) return "–";
    if (hours < 1) return `${Math.max(1, Math.round(hours * 60))} min`;
    if (hours < 48) return `${Math.round(hours)} h`;
    return `${Math.round(hours / 24)} d`;
  }
  const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  function when(iso) {
    const date = new Date(iso);
    const today = new Date();
    const sameDay = date.toDateString() === today.toDateString();
    return sameDay ? `today ${clock(iso)}` : date.toLocaleDateString([], { month: "short", day: "numeric" });
  }
  const words = (value) => String(value || "").toLowerCase().replace(/_/g, " ");

  class ApiError extends Error {
    constructor(message, code) {
      super(message);
      this.code = code;
    }
  }

  // ---------- the session ----------

  function saveSession(session) {
    state.session = session;
    if (session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
    else sessionStorage.removeItem(SESSION_KEY);
    scheduleRefresh();
  }

  function loadSession() {
    try {
      const stored = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
      if (stored && new Date(stored.refreshTokenExpiresAt) > new Date()) return stored;
    } catch (_) {
      /* a damaged entry is the same as none */
    }
    sessionStorage.removeItem(SESSION_KEY);
    return null;
  }

  function scheduleRefresh() {
    clearTimeout(state.refreshTimer);
    if (!state.session) return;
    const expires = new Date(state.session.accessTokenExpiresAt).getTime();
    // Renew a minute before the access token expires (at once if it already has).
    const wait = Math.max(0, expires - Date.now() - 60000);
    state.refreshTimer = setTimeout(() => refreshSession().catch(() => {}), wait);
  }

  let refreshing = null;
  function refreshSession() {
    if (!state.session) return Promise.reject(new ApiError("Signed out.", "UNAUTHENTICATED"));
    if (refreshing) return refreshing;
    refreshing = (async () => {
      try {
        const data = await gql(
          `mutation Refresh($input: RefreshSessionInput!) {
             refreshSession(input: $input) { accessToken accessTokenExpiresAt refreshToken refreshTokenExpiresAt }
           }`,
          { input: { refreshToken: state.session.refreshToken } },
          { anonymous: true },
        );
        saveSession(data.refreshSession);
        return data.refreshSession;
      } catch (error) {
        if (error.code === "UNAUTHENTICATED") endSession("Your session has ended. Please sign in again.");
        throw error;
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  // ---------- GraphQL over HTTP ----------

  async function gql(query, variables, options = {}) {
    const headers = {
      "Content-Type": "application/json",
      Accept: "application/graphql-response+json, application/json",
    };
    if (!options.anonymous && state.session) headers.Authorization = `Bearer ${state.session.accessToken}`;
    let response;
    try {
      response = await fetch("/graphql", {
        method: "POST",
        headers,
        body: JSON.stringify({ query, variables }),
        credentials: "omit",
        cache: "no-store",
      });
    } catch (_) {
      throw new ApiError("Journeymap cannot be reached. Check the connection; the page retries on its own.", "NETWORK");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      throw new ApiError(`Journeymap answered ${response.status} without a readable body.`, "INTERNAL");
    }
    const errors = (body && body.errors) || [];
    if (errors.length) {
      const first = errors[0];
      const code = (first.extensions && first.extensions.code) || "INTERNAL";
      if (code === "UNAUTHENTICATED" && !options.anonymous && !options.retried && state.session) {
        await refreshSession();
        return gql(query, variables, { ...options, retried: true });
      }
      if (code === "UNAUTHENTICATED" && !options.anonymous) {
        endSession("Your session has ended. Please sign in again.");
      }
      throw new ApiError(first.message || "Something went wrong.", code);
    }
    return body.data;
  }

  // ---------- sign in and out ----------

  function showSignIn(message, kind) {
    $("app").hidden = true;
    $("signin").hidden = false;
    const box = $("signin-message");
    if (message) {
      box.textContent = message;
      box.className = kind === "info" ? "message info" : "message";
      box.hidden = false;
    } else {
      box.hidden = true;
    }
    document.title = "Sign in · Journeymap";
    ($("clinic").value ? $("email").value ? $("password") : $("email") : $("clinic")).focus();
  }

  function endSession(message) {
    closeSocket();
    clearTimeout(state.mapTimer);
    saveSession(null);
    state.viewer = null;
    state.cursor = null;
    state.liveSeen.clear();
    $("live").replaceChildren();
    $("live-empty").hidden = false;
    $("password").value = "";
    showSignIn(message, "info");
  }

  async function signIn(event) {
    event.preventDefault();
    const clinic = $("clinic").value.trim();
    const email = $("email").value.trim();
    const password = $("password").value;
    const box = $("signin-message");
    if (!clinic || !email || !password) {
      box.textContent = "Enter your clinic, email and password.";
      box.className = "message";
      box.hidden = false;
      return;
    }
    const button = $("signin-button");
    button.disabled = true;
    button.textContent = "Signing in…";
    box.hidden = true;
    try {
      const data = await gql(
        `mutation SignIn($input: LoginInput!) {
           login(input: $input) { accessToken accessTokenExpiresAt refreshToken refreshTokenExpiresAt }
         }`,
        { input: { clinic, email, password } },
        { anonymous: true },
      );
      saveSession(data.login);
      $("password").value = "";
      await start();
    } catch (error) {
      box.textContent =
        error.code === "UNAUTHENTICATED"
          ? "Those details don't match an account. Check the clinic, email and password, and try again."
          : error.code === "RATE_LIMITED"
            ? "Too many attempts. Wait a minute, then try again."
            : error.message;
      box.className = "message";
      box.hidden = false;
      $("password").focus();
    } finally {
      button.disabled = false;
      button.textContent = "Sign in";
    }
  }

  async function signOut() {
    const session = state.session;
    if (session) {
      try {
        await gql(
          `mutation SignOut($input: LogoutInput) { logout(input: $input) { ended } }`,
          { input: { refreshToken: session.refreshToken } },
        );
      } catch (_) {
        /* signed out locally either way */
      }
    }
    endSession("You are signed out.");
  }

  // ---------- the dashboard ----------

  async function start() {
    const data = await gql(`query Start {
      viewer { name role scopes clinic { name slug } }
      pathways { id name stages { id name } }
    }`);
    state.viewer = data.viewer;
    state.pathways = data.pathways;
    $("signin").hidden = true;
    $("app").hidden = false;
    $("clinic-name").textContent = data.viewer.clinic.name;
    $("who").textContent = `${data.viewer.name} · ${words(data.viewer.role || "token")}`;
    document.title = `${data.viewer.clinic.name} · Journeymap`;
    const picker = $("pathway");
    const previous = picker.value;
    picker.replaceChildren(...data.pathways.map((p) => el("option", { value: p.id, text: p.name })));
    if (previous && data.pathways.some((p) => p.id === previous)) picker.value = previous;
    if (!data.pathways.length) {
      $("map").replaceChildren(el("p", { class: "empty", text: "This clinic has no pathways yet." }));
    } else {
      loadMap();
    }
    loadWork();
    connect();
    $("main").focus();
  }

  function periodStart() {
    const days = Number($("period").value) || 30;
    return new Date(Date.now() - days * 86400000).toISOString();
  }

  let mapRequest = 0;
  async function loadMap(options = {}) {
    const pathwayId = $("pathway").value;
    if (!pathwayId) return;
    const mine = ++mapRequest;
    const map = $("map");
    if (!options.quiet) {
      map.setAttribute("aria-busy", "true");
      if (!map.querySelector("svg")) map.replaceChildren(el("p", { class: "muted", text: "Loading the map…" }));
    }
    try {
      const data = await gql(
        `query Map($pathwayId: ID!, $from: DateTime) {
           journeyMap(pathwayId: $pathwayId, from: $from) {
             generatedAt
             stages {
               stage { id name category }
               activeCount enteredCount conversionRate medianHoursInStage stalledCount overdueFollowUps nps
             }
             svg
           }
         }`,
        { pathwayId, from: periodStart() },
      );
      if (mine !== mapRequest) return;
      renderMap(data.journeyMap, options.quiet);
    } catch (error) {
      if (mine !== mapRequest || error.code === "UNAUTHENTICATED") return;
      map.replaceChildren(
        el("div", { class: "error-box", role: "alert" },
          el("p", { text: `The map could not be loaded: ${error.message}` }),
          el("button", { type: "button", onclick: () => loadMap(), text: "Try again" })),
      );
    } finally {
      if (mine === mapRequest) map.setAttribute("aria-busy", "false");
    }
  }

  function renderMap(journeyMap, flash) {
    // The picture: parsed as SVG, never as HTML, and nothing active kept.
    const doc = new DOMParser().parseFromString(journeyMap.svg, "image/svg+xml");
    const svg = doc.documentElement;
    const map = $("map");
    if (svg && svg.nodeName === "svg" && !doc.querySelector("parsererror")) {
      svg.querySelectorAll("script, foreignObject").forEach((n) => n.remove());
      for (const node of [svg, ...svg.querySelectorAll("*")]) {
        for (const attr of [...node.attributes]) if (/^on/i.test(attr.name)) node.removeAttribute(attr.name);
      }
      map.replaceChildren(document.importNode(svg, true));
    } else {
      map.replaceChildren(el("p", { class: "error-box", text: "The map picture could not be drawn." }));
    }

    const stages = journeyMap.stages.filter((s) => s.stage);
    const total = (key) => stages.reduce((sum, s) => sum + (s[key] || 0), 0);
    const figures = [
      { label: "Active journeys", value: total("activeCount"), hint: "in the pathway now" },
      { label: "Entered", value: total("enteredCount"), hint: "stage entries in the period" },
      { label: "Stalled", value: total("stalledCount"), hint: "past their stage's target", tone: total("stalledCount") ? "warn" : "" },
      { label: "Overdue follow-ups", value: total("overdueFollowUps"), hint: "waiting on the team", tone: total("overdueFollowUps") ? "bad" : "" },
    ];
    $("kpis").replaceChildren(
      ...figures.map((f) =>
        el("div", { class: `kpi ${f.tone || ""} ${flash ? "flash" : ""}` },
          el("div", { class: "label", text: f.label }),
          el("div", { class: "value", text: number(f.value) }),
          el("div", { class: "hint", text: f.hint }))),
    );

    const badge = (n, tone) => el("span", { class: `badge ${n ? tone : "zero"}`, text: number(n) });
    const rows = stages.map((s) =>
      el("tr", { "data-stage": s.stage.id, class: flash ? "flash" : null },
        el("th", { scope: "row" },
          el("span", { class: "stage-name", text: s.stage.name }),
          el("span", { class: "cat", text: words(s.stage.category) })),
        el("td", { class: "num" }, el("span", { class: "big", text: number(s.activeCount) })),
        el("td", { class: "num", text: number(s.enteredCount) }),
        el("td", { class: "num", text: percent(s.conversionRate) }),
        el("td", { class: "num", text: duration(s.medianHoursInStage) }),
        el("td", { class: "num" }, badge(s.stalledCount, "warn")),
        el("td", { class: "num" }, badge(s.overdueFollowUps, "bad"))));
    const body = $("stages").tBodies[0];
    body.replaceChildren(...rows);
    if (!rows.length) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: "7", class: "empty", text: "This pathway has no stages yet." })));
    }
    $("updated").textContent = `Updated ${clock(journeyMap.generatedAt)}`;
  }

  // A stage change on the shown pathway: fetch the figures again, soon, once.
  function refreshMapSoon() {
    clearTimeout(state.mapTimer);
    state.mapTimer = setTimeout(() => loadMap({ quiet: true }), 200);
  }

  // ---------- the work list ----------

  async function loadWork() {
    const box = $("work");
    const contact = can("patients:read");
    const fields = `id kind channel dueAt sendAt overdue priority explanation status
      patient { givenName familyName ${contact ? "email phone" : ""} }`;
    try {
      const data = await gql(`query Work {
        sendable: followUps(first: 25, filter: { sendable: true }) { nodes { ${fields} } }
        overdue: followUps(first: 25, filter: { status: OPEN, overdue: true }) { nodes { ${fields} } }
      }`);
      const byId = new Map();
      for (const f of [...data.overdue.nodes, ...data.sendable.nodes]) byId.set(f.id, f);
      const items = [...byId.values()].sort(
        (a, b) => (b.overdue - a.overdue) || (a.priority - b.priority) || (new Date(a.dueAt) - new Date(b.dueAt)),
      );
      renderWork(items, contact);
    } catch (error) {
      if (error.code === "UNAUTHENTICATED") return;
      if (error.code === "FORBIDDEN") {
        box.replaceChildren(el("p", { class: "empty", text: "Your role does not include the work list." }));
        return;
      }
      box.replaceChildren(
        el("div", { class: "error-box", role: "alert" },
          el("p", { text: `The work list could not be loaded: ${error.message}` }),
          el("button", { type: "button", onclick: loadWork, text: "Try again" })),
      );
    }
  }

  function renderWork(items, contact) {
    const box = $("work");
    if (!items.length) {
      box.replaceChildren(el("p", { class: "empty", text: "Nothing to follow up right now. The team is all caught up." }));
      return;
    }
    const act = can("journeys:write");
    const shown = state.workExpanded ? items : items.slice(0, WORK_PAGE);
    const rest = items.length - shown.length;
    box.replaceChildren(
      el("p", { class: "work-count", text: `${items.length} to do, most urgent first` }),
      el("ul", { class: "work" },
        shown.map((f) => {
          const reach = !contact ? null : (f.channel === "EMAIL" ? f.patient.email : f.patient.phone) || f.patient.email || f.patient.phone;
          return el("li", { "data-follow-up": f.id },
            el("div", { class: "top" },
              el("span", { class: "name", text: fullName(f.patient) }),
              el("span", { class: "meta", text: `due ${when(f.dueAt)}` })),
            el("div", {},
              f.overdue ? el("span", { class: "chip overdue", text: "Overdue" }) : null,
              f.priority === 1 ? el("span", { class: "chip urgent", text: "Urgent" }) : null,
              el("span", { class: "chip", text: words(f.channel) }),
              el("span", { class: "chip", text: words(f.kind) })),
            el("p", { class: "why", text: f.explanation }),
            reach ? el("p", { class: "contact", text: reach }) : null,
            act
              ? el("div", { class: "actions" },
                  el("button", { type: "button", class: "small done", onclick: (e) => settle(f, "done", e.currentTarget), text: "Done", "aria-label": `Done: ${fullName(f.patient)}` }),
                  el("button", { type: "button", class: "small", onclick: (e) => settle(f, "skip", e.currentTarget), text: "Skip", "aria-label": `Skip: ${fullName(f.patient)}` }))
              : null);
        })),
      rest > 0
        ? el("button", { type: "button", class: "more", onclick: () => { state.workExpanded = true; renderWork(items, contact); }, text: `Show ${rest} more` })
        : null,
    );
  }

  async function settle(followUp, action, button) {
    const item = button.closest("li");
    item.querySelectorAll("button").forEach((b) => (b.disabled = true));
    try {
      if (action === "done") {
        await gql(`mutation Done($input: CompleteFollowUpInput!) { completeFollowUp(input: $input) { followUp { id status } } }`,
          { input: { followUpId: followUp.id } });
      } else {
        await gql(`mutation Skip($input: SkipFollowUpInput!) { skipFollowUp(input: $input) { followUp { id status } } }`,
          { input: { followUpId: followUp.id, reason: "Skipped from the dashboard" } });
      }
      banner(`${action === "done" ? "Done" : "Skipped"}: ${fullName(followUp.patient)}.`);
      loadWork();
    } catch (error) {
      item.querySelectorAll("button").forEach((b) => (b.disabled = false));
      banner(`That did not work: ${error.message}`, true);
    }
  }

  function banner(text, error) {
    const box = $("banner");
    box.textContent = text;
    box.className = error ? "banner error" : "banner";
    box.hidden = false;
    clearTimeout(banner.timer);
    banner.timer = setTimeout(() => (box.hidden = true), 6000);
  }

  // ---------- live: graphql-transport-ws ----------

  const STAGE_CHANGES = `subscription Live($after: String) {
    journeyStageChanged(after: $after) {
      id cursor occurredAt
      patient { givenName familyName }
      fromStage { name }
      toStage { name }
      journey { pathway { id name } }
    }
  }`;

  function setLive(text, tone) {
    const pill = $("live-status");
    pill.textContent = text;
    pill.className = `pill ${tone || ""}`;
  }

  function connect() {
    closeSocket();
    if (!state.session) return;
    const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/graphql/ws`;
    const socket = new WebSocket(url, "graphql-transport-ws");
    state.socket = socket;
    setLive("Connecting…");
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${state.session.accessToken}` } }));
    };
    socket.onmessage = (message) => {
      let msg;
      try {
        msg = JSON.parse(message.data);
      } catch (_) {
        return;
      }
      switch (msg.type) {
        case "connection_ack":
          state.reconnectDelay = 1000;
          setLive("Live", "live");
          socket.send(JSON.stringify({ id: "stages", type: "subscribe", payload: { query: STAGE_CHANGES, variables: { after: state.cursor } } }));
          break;
        case "ping":
          socket.send(JSON.stringify({ type: "pong" }));
          break;
        case "next":
          if (msg.payload && msg.payload.data && msg.payload.data.journeyStageChanged) onStageChange(msg.payload.data.journeyStageChanged);
          break;
        case "error":
          setLive("Live updates paused", "down");
          break;
        case "complete":
          socket.close(1000);
          break;
        default:
          break;
      }
    };
    socket.onclose = (event) => {
      if (state.socket !== socket) return;
      state.socket = null;
      if (!state.session) return;
      setLive("Reconnecting…", "down");
      const unauthorized = event.code === 4401 || event.code === 4403;
      const delay = state.reconnectDelay;
      state.reconnectDelay = Math.min(state.reconnectDelay * 2, 15000);
      state.reconnectTimer = setTimeout(async () => {
        if (unauthorized) {
          try {
            await refreshSession();
          } catch (_) {
            return;
          }
        }
        connect();
      }, delay);
    };
  }

  function closeSocket() {
    clearTimeout(state.reconnectTimer);
    const socket = state.socket;
    state.socket = null;
    if (socket) socket.close(1000);
  }

  function onStageChange(change) {
    state.cursor = change.cursor;
    if (state.liveSeen.has(change.id)) return;
    state.liveSeen.add(change.id);
    const feed = $("live");
    $("live-empty").hidden = true;
    feed.prepend(
      el("li", { class: "new" },
        el("time", { datetime: change.occurredAt, text: clock(change.occurredAt) }),
        el("span", { class: "who", text: fullName(change.patient) }),
        el("span", { class: "move" },
          change.fromStage.name, el("span", { class: "arrow", "aria-label": "to", text: "→" }), change.toStage.name,
          el("span", { class: "muted", text: ` · ${change.journey.pathway.name}` }))),
    );
    while (feed.children.length > 50) feed.lastElementChild.remove();
    if (change.journey.pathway.id === $("pathway").value) refreshMapSoon();
  }

  // ---------- wiring ----------

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", signOut);
    $("pathway").addEventListener("change", () => loadMap());
    $("period").addEventListener("change", () => loadMap());
    const clinic = new URLSearchParams(location.search).get("clinic");
    if (clinic) $("clinic").value = clinic;
    const session = loadSession();
    if (session) {
      saveSession(session);
      start().catch((error) => {
        if (error.code !== "UNAUTHENTICATED") showSignIn(error.message);
      });
    } else {
      showSignIn();
    }
  });
})();
