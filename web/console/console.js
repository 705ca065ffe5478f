// The operator console: views over the admin API (docs/operations.md), no build step.
//
// Security rules (docs/console.md): the admin token is kept in this module's memory, and in
// sessionStorage only when the user asks; it is sent only in the Authorization header, never
// in a URL, a cookie or a log. Everything the API returns is written with textContent, never
// parsed as HTML. Every state-changing call carries the console header, which the edge
// requires of callers signed in through Cloudflare Access (a cross-site page cannot send it).

const STORAGE_KEY = "didit-edge-console-token";
const CONSOLE_HEADER = "x-didit-edge-console";

let token = sessionStorage.getItem(STORAGE_KEY);
let session = null;
let refreshTimer = null;

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text nodes, never HTML). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the admin API; answers its JSON, or throws an ApiError with the stable code. */
async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (method !== "GET") headers[CONSOLE_HEADER] = "1";
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
    redirect: "error",
  });
  let answer = null;
  try {
    answer = await response.json();
  } catch {
    answer = null;
  }
  if (!response.ok) {
    const error = answer && answer.error ? answer.error : { code: "http_" + response.status, message: response.statusText };
    throw new ApiError(response.status, error.code, error.message);
  }
  return answer;
}

function say(text, bad = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("bad", bad);
}

function failed(error) {
  if (error instanceof ApiError && error.status === 401 && token) {
    signOut("Your sign-in was refused; sign in again.");
    return;
  }
  const code = error instanceof ApiError ? ` (${error.code})` : "";
  say(`${error.message}${code}`, true);
}

const time = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "—");

function ago(ms) {
  const secs = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (secs < 120) return `${secs} s`;
  if (secs < 7200) return `${Math.round(secs / 60)} min`;
  if (secs < 172800) return `${Math.round(secs / 3600)} h`;
  return `${Math.round(secs / 86400)} days`;
}

/** Asks the user to confirm; with `word`, only typing it enables the button. */
function confirmAction(text, word) {
  const dialog = $("confirm");
  const input = $("confirm-input");
  const ok = $("confirm-ok");
  $("confirm-text").textContent = text;
  $("confirm-typed").hidden = !word;
  $("confirm-word").textContent = word || "";
  input.value = "";
  ok.disabled = Boolean(word);
  input.oninput = () => {
    ok.disabled = input.value !== word;
  };
  dialog.returnValue = "";
  dialog.showModal();
  (word ? input : ok).focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

// ---- sign-in ---------------------------------------------------------------------------------

async function start() {
  try {
    session = await api("GET", "/admin/session");
  } catch (error) {
    session = null;
    if (token) {
      token = null;
      sessionStorage.removeItem(STORAGE_KEY);
    }
  }
  session ? enter() : showSignIn("");
}

function showSignIn(message) {
  $("app").hidden = true;
  $("sign-in").hidden = false;
  $("who").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in-error").textContent = message;
  $("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const typed = $("token").value.trim();
  if (!typed) {
    $("sign-in-error").textContent = "Enter a token.";
    return;
  }
  token = typed;
  try {
    session = await api("GET", "/admin/session");
  } catch (error) {
    token = null;
    $("sign-in-error").textContent =
      error instanceof ApiError && error.status === 401 ? "That token was refused." : `Sign-in failed: ${error.message}`;
    $("token").select();
    return;
  }
  if ($("remember").checked) sessionStorage.setItem(STORAGE_KEY, token);
  $("token").value = "";
  enter();
}

function signOut(message = "") {
  token = null;
  session = null;
  sessionStorage.removeItem(STORAGE_KEY);
  live.stop();
  clearInterval(refreshTimer);
  // What one sign-in looked up is not left on the page for the next.
  $("lk-result").replaceChildren();
  $("lk-form").reset();
  lookup.form();
  showSignIn(message);
}

const isOperator = () => session && session.role === "operator";

function enter() {
  $("sign-in").hidden = true;
  $("app").hidden = false;
  const who = session.identity ? `${session.identity}, ` : "";
  $("who").textContent = `Signed in: ${who}${isOperator() ? "operator" : "read-only"} (${session.via === "access" ? "Cloudflare Access" : "token"})`;
  $("who").hidden = false;
  // Signed in through Access, signing out is Access's own logout.
  $("sign-out").hidden = session.via !== "token";
  for (const node of document.querySelectorAll("[data-operator]")) node.hidden = !isOperator();
  route();
  $("main").focus();
}

// ---- views -----------------------------------------------------------------------------------

const DEFAULT_VIEW = "lookup";

const views = {
  lookup: { show: () => lookup.form() },
  "dead-letters": { show: () => deadLetters.load(true) },
  origins: { show: () => (loadOrigins(), didit.destinations()), every: 5000 },
  metrics: { show: loadMetrics, every: 15000 },
  reconciliation: { show: loadReconciliation, every: 15000 },
  erasure: { show: () => {}, operator: true },
  live: { show: () => {} },
};

function route() {
  let name = location.hash.slice(1);
  if (!views[name] || (views[name].operator && !isOperator())) name = DEFAULT_VIEW;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${name}`;
  say("");
  clearInterval(refreshTimer);
  const view = views[name];
  view.show();
  if (view.every) refreshTimer = setInterval(view.show, view.every);
}

// Lookup: one timeline per event of a subject (POST /admin/lookup), or of a dead letter named by
// its id alone. The ids ride in the body, as the API wants.
const LOOKUP_BY = {
  session: { label: "Session id", kind: "session" },
  user: { label: "vendor_data", kind: "user" },
  subject: { label: "Subject id", kind: null },
  event: { label: null, kind: null },
};

/** A timestamp as a <time> element. */
function when(ms) {
  return el("time", { datetime: new Date(ms).toISOString() }, time(ms));
}

/** One step of a timeline: its time (if it has one), its name, and what happened. */
function step(name, atMs, what, attrs = {}) {
  return el(
    "li",
    { class: "step", "data-step": name, ...attrs },
    atMs ? [when(atMs), " "] : null,
    el("strong", {}, name[0].toUpperCase() + name.slice(1).replaceAll("_", " ")),
    " ",
    what,
  );
}

const plural = (count, one, many = one + "s") => `${count} ${count === 1 ? one : many}`;

function receivedStep(received) {
  const age = `Didit's timestamp was ${received.age_ms} ms old on arrival`;
  let how;
  if (received.source === "api") {
    how = ["from Didit's API (reconciled: its webhook never came, so there is no signature); ", age];
  } else if (received.signature) {
    const secret = received.signature.secret_index;
    how = [
      "by webhook; ",
      el("code", { "data-signature": received.signature.header }, received.signature.header),
      ` verified, with configured secret ${secret} (0 is the first); `,
      age,
    ];
  } else {
    how = [`by ${received.source} (which signature verified was not kept for this event); `, age];
  }
  return step("received", received.at_ms, how, { "data-source": received.source });
}

function requestStep(entry) {
  const parts = ["to ", el("strong", { "data-origin": entry.origin ?? "" }, entry.origin ?? "no origin"), ": "];
  const outcome = [];
  if (entry.status !== null && entry.status !== undefined) outcome.push(`HTTP ${entry.status}`);
  if (entry.error) outcome.push(el("code", {}, entry.error));
  if (outcome.length === 0) outcome.push("no answer");
  outcome.forEach((part, index) => parts.push(index ? ", " : "", part));
  if (entry.latency_ms !== null && entry.latency_ms !== undefined) parts.push(`, ${entry.latency_ms} ms`);
  if (entry.location) parts.push(", redirected to ", el("code", { class: "mono" }, entry.location));
  return step("request", entry.at_ms, parts, {
    "data-status": entry.status ?? "",
    "data-error": entry.error ?? "",
    class: entry.error ? "step failed" : "step",
  });
}

function copyItem(copy) {
  const counts = `${plural(copy.attempts, "attempt")}, ${plural(copy.requests, "request")}` +
    (copy.replays ? `, ${plural(copy.replays, "replay")}` : "");
  const steps = [];
  if (copy.requests_not_kept > 0) {
    steps.push(el("li", { class: "step muted" }, `${plural(copy.requests_not_kept, "earlier request")} counted but no longer kept`));
  }
  for (const entry of copy.log) steps.push(requestStep(entry));
  if (copy.replayed_at_ms) {
    steps.push(step("replayed", copy.replayed_at_ms, `by an operator (${plural(copy.replays, "time")}), last at this time`));
  }
  const reason = copy.reason ?? "no reason kept";
  switch (copy.state) {
    case "delivered":
      steps.push(step("delivered", copy.at_ms, ["to ", el("strong", {}, copy.delivered_to ?? "an origin")], { class: "step done" }));
      break;
    case "dead":
      steps.push(step("dead_letter", copy.at_ms, ["reason: ", el("code", { "data-reason": reason }, reason)], { class: "step failed" }));
      break;
    case "expired":
      steps.push(step("expired", copy.at_ms, ["(no longer tried); reason: ", el("code", { "data-reason": reason }, reason)]));
      break;
    default:
      steps.push(
        step(
          "pending",
          copy.next_attempt_at_ms,
          copy.next_attempt_at_ms
            ? `after ${plural(copy.failures ?? 0, "failed attempt")}; next try at this time`
            : `waiting (state ${copy.state}, no next try scheduled)`,
        ),
      );
  }
  return el(
    "li",
    { class: "copy", "data-consumer": copy.consumer, "data-state": copy.state },
    el("h4", {}, `Copy for consumer ${copy.consumer}: `, el("span", { class: `state state-copy-${copy.state}` }, copy.state === "dead" ? "dead letter" : copy.state)),
    el("p", { class: "muted" }, counts),
    el("ol", { class: "steps", "aria-label": `Requests and outcome for consumer ${copy.consumer}` }, steps),
  );
}

function timelineOf(event, index) {
  const headingId = `lk-event-${index}`;
  const items = [receivedStep(event.received)];
  if (event.classified) {
    const consumers = event.classified.consumers.length
      ? event.classified.consumers.join(", ")
      : "none (kept for deduplication only)";
    items.push(step("classified", null, `risk ${event.classified.risk_level}; consumers: ${consumers}`));
  } else {
    items.push(step("stored", null, "waiting for valid delivery settings before it is classified"));
  }
  for (const copy of event.copies) items.push(copyItem(copy));
  items.push(el("li", { class: "step muted", "data-step": "payload" }, event.payload_kept ? "Payload still kept." : "Payload no longer kept."));
  return el(
    "article",
    { class: "timeline", "data-event": event.id, "aria-labelledby": headingId },
    el("h3", { id: headingId }, el("code", {}, event.id), " ", el("span", { class: "muted" }, `${event.webhook_type}${event.status ? `, ${event.status}` : ""}`)),
    el(
      "p",
      { class: "muted" },
      `Created by Didit at ${time(event.created_at * 1000)}`,
      event.didit_event_id ? ["; Didit's event_id ", el("code", {}, event.didit_event_id)] : "",
      ".",
    ),
    el("ol", { class: "steps", "aria-label": `Timeline of ${event.id}` }, items),
  );
}

const lookup = {
  form() {
    const by = $("lk-by").value;
    const mode = LOOKUP_BY[by];
    $("lk-kind-field").hidden = by !== "subject";
    $("lk-id-field").hidden = by === "event";
    if (mode.label) $("lk-id-label").textContent = mode.label;
    $("lk-event-label").textContent = by === "event" ? "Event id (evt_…)" : "Event id (optional)";
  },
  request() {
    const by = $("lk-by").value;
    const eventId = $("lk-event").value.trim();
    if (by === "event") {
      if (!eventId) throw new Error("Enter the event id (evt_…).");
      return { event_id: eventId };
    }
    const id = $("lk-id").value;
    if (!id.trim()) throw new Error(`Enter the ${by === "user" ? "vendor_data" : LOOKUP_BY[by].label.toLowerCase()}.`);
    const body = { subject_kind: LOOKUP_BY[by].kind ?? $("lk-kind").value, subject_id: id };
    if (eventId) body.event_id = eventId;
    return body;
  },
  async submit(submitted) {
    submitted.preventDefault();
    const result = $("lk-result");
    let body;
    try {
      body = this.request();
    } catch (error) {
      say(error.message, true);
      return;
    }
    say("Looking up…");
    try {
      const answer = await api("POST", "/admin/lookup", body);
      this.render(answer, body);
      say(`${plural(answer.events.length, "event")} found.`);
      result.focus();
    } catch (error) {
      result.replaceChildren();
      failed(error);
      // Every try refused: the edge holds nothing, but Didit's attempts say what it answered
      // (shown only when Didit's view is on: the 404 is the whole answer otherwise).
      if (error instanceof ApiError && error.code === "subject_not_found") didit.attempts(body, true);
      return;
    }
    didit.attempts(body, false);
  },
  render(answer, body) {
    const parts = [];
    const named = body.subject_id !== undefined ? `${answer.subject_kind} “${body.subject_id}”` : `the ${answer.subject_kind} of ${body.event_id}`;
    parts.push(el("p", { "data-subject": answer.subject_kind }, `${named[0].toUpperCase()}${named.slice(1)}: ${plural(answer.events.length, "event")} kept.`));
    if (answer.erased_at_ms) {
      parts.push(
        el(
          "p",
          { class: "notice", "data-erased": answer.erased_at_ms },
          el("strong", {}, "Erased "),
          when(answer.erased_at_ms),
          ": the subject was erased and nothing personal is kept; what remains is what deduplication needs.",
        ),
      );
    }
    answer.events.forEach((event, index) => parts.push(timelineOf(event, index)));
    $("lk-result").replaceChildren(...parts);
  },
};

// Didit's view beside ours (POST /admin/didit/deliveries, GET /admin/didit/destinations): what
// Didit's API records of its own attempts and of each destination's health. Read only, with the
// edge's DIDIT_API_KEY; off without it.
const DIDIT_OFF = "Didit's view is off: set the DIDIT_API_KEY secret (a key with webhooks: read) to see Didit's own record.";
const dash = (value) => (value === null || value === undefined ? "—" : String(value));

const didit = {
  destinationsLoadedAt: 0,
  /** Didit's attempts for a looked-up session, in their own section below its timelines. */
  async attempts(body, onlyWhenOn) {
    if (!["session", "business_session"].includes(body.subject_kind) || body.event_id) return;
    // A later lookup replaces the result: an earlier one's answer, arriving late, is dropped.
    const lookupNumber = (this.lookups = (this.lookups ?? 0) + 1);
    const current = () => lookupNumber === this.lookups;
    const section = el("section", { class: "didit", id: "lk-didit", "aria-labelledby": "lk-didit-title" },
      el("h3", { id: "lk-didit-title" }, "Didit's attempts"));
    const note = el("p", { role: "status" }, "Reading Didit's attempts…");
    section.append(note);
    if (!onlyWhenOn) $("lk-result").append(section);
    try {
      const answer = await api("POST", "/admin/didit/deliveries", { subject_kind: body.subject_kind, subject_id: body.subject_id });
      if (!current() || (onlyWhenOn && !answer.enabled)) return;
      if (onlyWhenOn) $("lk-result").append(section);
      note.textContent = this.summary(answer);
      if (answer.enabled && answer.attempts.length) section.append(this.attemptsTable(answer.attempts));
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return failed(error);
      if (!current()) return;
      if (onlyWhenOn) $("lk-result").append(section);
      note.textContent = `${error.message}${error instanceof ApiError ? ` (${error.code})` : ""}`;
      note.classList.add("error");
    }
  },
  summary(answer) {
    if (!answer.enabled) return DIDIT_OFF;
    if (answer.destinations.length === 0) {
      return "No Didit webhook destination is this edge's (none enabled points at this host): set DIDIT_DESTINATION, see the Origins view.";
    }
    const tries = answer.attempts.length;
    const refused = answer.attempts.filter((a) => !(a.response_status >= 200 && a.response_status < 300));
    const answered = refused.length
      ? `; this edge answered ${refused.map((a) => dash(a.response_status)).join(", ")} to ${plural(refused.length, "of them", "of them")}`
      : tries ? "; this edge took every one" : "";
    const days = answer.days_from === "edge_timeline" ? "the days of this session's events" : "the last two days (the edge holds nothing of this session)";
    let text = `Didit tried ${plural(tries, "time")}${answered}. Read ${answer.date_from} to ${answer.date_to} UTC, ${days}.`;
    if (!answer.complete) {
      text += answer.budget_reached
        ? ` Only ${answer.pages_read} pages of Didit's deliveries are read per lookup and they did not cover those days: older attempts may be missing.`
        : " Didit's next page pointed outside its API and was not followed: older attempts may be missing.";
    }
    return text;
  },
  attemptsTable(attempts) {
    return el(
      "div",
      { class: "table-wrap" },
      el(
        "table",
        { id: "lk-didit-table" },
        el("caption", { class: "sr-only" }, "Didit's attempts, oldest first"),
        el("thead", {}, el("tr", {}, ["Time", "This edge answered", "Response time", "Didit says", "Webhook type"].map((h) => el("th", { scope: "col" }, h)))),
        el(
          "tbody",
          {},
          attempts.map((a) => {
            const ok = a.response_status >= 200 && a.response_status < 300;
            return el(
              "tr",
              { "data-didit-attempt": a.uuid ?? "", "data-status": dash(a.response_status) },
              el("td", { "data-label": "Time" }, a.at_ms ? when(a.at_ms) : dash(a.created_at)),
              el("td", { "data-label": "This edge answered" },
                el("span", { class: ok ? "state state-closed" : "state state-open" }, a.response_status === null ? "no answer" : `HTTP ${a.response_status}`)),
              el("td", { "data-label": "Response time" }, a.response_time_ms === null ? "—" : `${a.response_time_ms} ms`),
              el("td", { "data-label": "Didit says" }, dash(a.status)),
              el("td", { "data-label": "Webhook type" }, dash(a.webhook_type)),
            );
          }),
        ),
      ),
    );
  },
  /** Each destination's health as Didit reports it, at most once a minute (Didit rate-limits keys). */
  async destinations() {
    if (Date.now() - this.destinationsLoadedAt < 60000) return;
    this.destinationsLoadedAt = Date.now();
    const body = $("dd-body");
    try {
      const answer = await api("GET", "/admin/didit/destinations");
      if (!answer.enabled) {
        body.replaceChildren(el("p", { "data-didit": "off" }, DIDIT_OFF));
        return;
      }
      if (answer.destinations.length === 0) {
        body.replaceChildren(el("p", {}, "Didit lists no webhook destination for this key's application."));
        return;
      }
      const chosen = answer.chosen_by === "setting" ? "named by DIDIT_DESTINATION" : "enabled, and on this console's host";
      body.replaceChildren(
        el("p", { class: "muted" }, `This edge's destinations are those ${chosen}.`),
        el(
          "div",
          { class: "table-wrap" },
          el(
            "table",
            { id: "dd-table" },
            el("caption", { class: "sr-only" }, "Didit's webhook destinations and their health"),
            el("thead", {}, el("tr", {}, ["Destination", "URL", "Enabled", "Health (Didit's word)", "Failed / deliveries", "Error rate", "Average response", "Last delivery"].map((h) => el("th", { scope: "col" }, h)))),
            el(
              "tbody",
              {},
              answer.destinations.map((d) =>
                el(
                  "tr",
                  { "data-destination": d.uuid, "data-this-edge": d.this_edge ? "yes" : "no" },
                  el("td", { "data-label": "Destination" }, el("strong", {}, d.label || d.uuid), d.this_edge ? el("span", { class: "tag" }, "this edge") : null),
                  el("td", { "data-label": "URL" }, el("code", {}, dash(d.url))),
                  el("td", { "data-label": "Enabled" }, d.enabled ? "yes" : "no"),
                  el("td", { "data-label": "Health (Didit's word)", "data-field": "health" }, dash(d.health_status)),
                  el("td", { "data-label": "Failed / deliveries", "data-field": "failed" }, `${dash(d.failed_deliveries_count)} / ${dash(d.deliveries_count)}`),
                  el("td", { "data-label": "Error rate" }, d.error_rate_percentage === null ? "—" : `${d.error_rate_percentage}%`),
                  el("td", { "data-label": "Average response" }, d.average_response_time_ms === null ? "—" : `${Math.round(d.average_response_time_ms)} ms`),
                  el("td", { "data-label": "Last delivery" }, dash(d.last_delivery_at)),
                ),
              ),
            ),
          ),
        ),
      );
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return failed(error);
      body.replaceChildren(el("p", { class: "error" }, `${error.message}${error instanceof ApiError ? ` (${error.code})` : ""}`));
    }
  },
};

// Dead letters: the API filters by consumer and pages; origin, type and age filter what is
// loaded, here.
const deadLetters = {
  rows: [],
  next: null,
  total: 0,
  filters() {
    const form = new FormData($("dl-filters"));
    return {
      consumer: form.get("consumer").trim(),
      origin: form.get("origin").trim(),
      type: form.get("type").trim(),
      age: Number(form.get("age")),
    };
  },
  shown() {
    const { origin, type, age } = this.filters();
    return this.rows.filter(
      (row) =>
        (!origin || row.attempts.some((attempt) => attempt.origin === origin)) &&
        (!type || row.webhook_type === type) &&
        (!age || Date.now() - row.dead_at_ms >= age),
    );
  },
  async load(fresh) {
    const { consumer } = this.filters();
    const query = new URLSearchParams({ limit: "200" });
    if (consumer) query.set("consumer", consumer);
    if (!fresh && this.next !== null) query.set("after", String(this.next));
    try {
      const page = await api("GET", `/admin/dead-letters?${query}`);
      this.rows = fresh ? page.dead_letters : this.rows.concat(page.dead_letters);
      this.next = page.next;
      this.total = page.total;
      this.render();
    } catch (error) {
      failed(error);
    }
  },
  render() {
    const shown = this.shown();
    const body = $("dl-table").tBodies[0];
    body.replaceChildren(
      ...shown.map((row) => {
        const last = row.attempts[row.attempts.length - 1];
        const lastText = last
          ? `${last.origin || "no origin"}: ${last.status ?? ""} ${last.error || ""}`.replace(/\s+/g, " ")
          : "none";
        const replay = el(
          "button",
          { type: "button", class: "link", "data-replay": row.id, "aria-label": `Replay ${row.id}` },
          "Replay",
        );
        replay.addEventListener("click", () => this.replayOne(row.id));
        return el(
          "tr",
          { "data-id": row.id },
          el("td", { "data-label": "Event" }, el("code", {}, row.id)),
          el("td", { "data-label": "Consumer" }, row.consumer),
          el("td", { "data-label": "Subject" }, row.subject.split(":")[0]),
          el("td", { "data-label": "Type" }, row.webhook_type),
          el("td", { "data-label": "Reason" }, row.reason),
          el("td", { "data-label": "Dead since" }, el("time", { datetime: new Date(row.dead_at_ms).toISOString(), title: time(row.dead_at_ms) }, ago(row.dead_at_ms))),
          el("td", { "data-label": "Last attempt" }, `${lastText} (${row.attempts.length} listed)`),
          el("td", {}, isOperator() ? replay : null),
        );
      }),
    );
    const filtered = shown.length !== this.rows.length;
    $("dl-summary").textContent =
      `${this.total} dead letter${this.total === 1 ? "" : "s"} in all; ${this.rows.length} loaded` +
      (filtered ? `, ${shown.length} match the filters.` : ".");
    $("dl-more").hidden = this.next === null;
    $("dl-replay-all").disabled = shown.length === 0;
  },
  async replayOne(id) {
    try {
      const answer = await api("POST", `/admin/dead-letters/${encodeURIComponent(id)}/replay`);
      say(`Replayed ${id}: ${answer.replayed.map((copy) => copy.consumer).join(", ")} back in line.`);
      await this.load(true);
    } catch (error) {
      failed(error);
    }
  },
  async replayShown() {
    const shown = this.shown();
    const { consumer, origin, type, age } = this.filters();
    const local = Boolean(origin || type || age);
    // Without filters of its own the API's bulk replay covers them all (every page, not only
    // the loaded ones): the count is the API's total.
    const count = local ? new Set(shown.map((row) => row.id)).size : this.total;
    const scope = consumer ? ` of consumer ${consumer}` : "";
    const ok = await confirmAction(`Replay ${count} dead letter${count === 1 ? "" : "s"}${scope}? Each starts over with a fresh retry schedule.`);
    if (!ok) return;
    let replayed = 0;
    try {
      if (local) {
        for (const id of new Set(shown.map((row) => row.id))) {
          const answer = await api("POST", `/admin/dead-letters/${encodeURIComponent(id)}/replay`);
          replayed += answer.replayed.length;
        }
      } else {
        const query = consumer ? `?${new URLSearchParams({ consumer })}` : "";
        for (let round = 0; round < 100; round++) {
          const answer = await api("POST", `/admin/dead-letters/replay${query}`);
          replayed += answer.replayed;
          if (answer.remaining === 0) break;
        }
      }
      say(`Replayed ${replayed} dead letter${replayed === 1 ? "" : "s"}.`);
    } catch (error) {
      failed(error);
    }
    await this.load(true);
  },
};

function breaker(health) {
  switch (health.state) {
    case "closed":
      return `closed (${health.consecutive_failures} failure${health.consecutive_failures === 1 ? "" : "s"} in a row)`;
    case "open":
      return `open until ${time(health.until_ms)} (cool-down ${Math.round(health.cool_down_ms / 1000)} s)`;
    case "half_open":
      return `half open: probing (${health.consecutive_successes} success${health.consecutive_successes === 1 ? "" : "es"})`;
    default:
      return health.state;
  }
}

// A share per mille as a percentage; a percentile as the bound of its bucket.
const share = (perMille) => (perMille === null ? "—" : `${(perMille / 10).toFixed(1)}%`);
const bound = (ms) => (ms === null ? "—" : `< ${ms} ms`);

// A health probe's outcome, or why there is none.
function lastProbe(origin, probe) {
  if (!origin.probed) return "no health_url";
  if (!probe) return "not yet probed";
  return el("span", { class: `state state-${probe.up ? "closed" : "open"}` }, `${probe.up ? "up" : "down"}, ${ago(probe.at_ms)} ago`);
}

async function loadOrigins() {
  try {
    // The breakers and the last hour's delivery, read side by side: one view answers "is it
    // healthy, when was it last checked, and how has it done lately".
    const [{ origins }, metrics] = await Promise.all([api("GET", "/admin/origins"), api("GET", "/admin/metrics")]);
    const hourOf = new Map(metrics.origins.map((m) => [m.origin, m]));
    $("or-table").tBodies[0].replaceChildren(
      ...origins.map((origin) => {
        const m = hourOf.get(origin.name);
        return el(
          "tr",
          { "data-origin": origin.name },
          el("td", { "data-label": "Origin" }, el("strong", {}, origin.name)),
          el("td", { "data-label": "Consumer" }, origin.consumer),
          el("td", { "data-label": "Priority / weight" }, `${origin.priority} / ${origin.weight}`),
          el("td", { "data-label": "Where" }, [origin.region, origin.cloud].filter(Boolean).join(", ") || "—"),
          el("td", { "data-label": "Timeout" }, `${origin.timeout_ms} ms`),
          el(
            "td",
            { "data-label": "Breaker" },
            el("span", { class: `state state-${origin.health.state}`, "data-state": origin.health.state }, breaker(origin.health)),
          ),
          el("td", { "data-label": "Last probe", "data-field": "last-probe" }, lastProbe(origin, m?.last_probe)),
          el("td", { "data-label": "Success (hour)", "data-field": "success" }, m ? share(m.hour.success_per_mille) : "—"),
          el("td", { "data-label": "p50 / p95 (hour)" }, m ? `${bound(m.hour.p50_ms)} / ${bound(m.hour.p95_ms)}` : "—"),
        );
      }),
    );
  } catch (error) {
    failed(error);
  }
}

async function loadMetrics() {
  try {
    const { origins } = await api("GET", "/admin/metrics");
    $("mt-table").tBodies[0].replaceChildren(
      ...origins.flatMap((origin) =>
        [
          ["hour", "last hour", origin.hour],
          ["day", "last day", origin.day],
        ].map(([key, label, m]) =>
          el(
            "tr",
            { "data-origin": origin.origin, "data-window": key },
            el("td", { "data-label": "Origin" }, el("strong", {}, origin.origin)),
            el("td", { "data-label": "Window" }, label),
            el("td", { "data-label": "Attempts", "data-field": "attempts" }, String(m.attempts)),
            el("td", { "data-label": "Delivered", "data-field": "delivered" }, String(m.delivered)),
            el("td", { "data-label": "Refused", "data-field": "refused" }, String(m.refused)),
            el("td", { "data-label": "Timeouts" }, String(m.timeouts)),
            el("td", { "data-label": "Network" }, String(m.network)),
            el("td", { "data-label": "Success", "data-field": "success" }, share(m.success_per_mille)),
            el("td", { "data-label": "p50", "data-field": "p50" }, bound(m.p50_ms)),
            el("td", { "data-label": "p95", "data-field": "p95" }, bound(m.p95_ms)),
          ),
        ),
      ),
    );
  } catch (error) {
    failed(error);
  }
}

function facts(pairs) {
  return el("dl", { class: "facts" }, pairs.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value ?? "—")]));
}

async function loadReconciliation() {
  const body = $("rc-body");
  try {
    const status = await api("GET", "/admin/reconciliation");
    if (!status.enabled) {
      body.replaceChildren(
        el("p", { "data-reconciliation": "off" }, "Reconciliation is off: set the DIDIT_API_KEY secret to find results whose webhook never came (docs/reconciliation.md)."),
      );
      return;
    }
    const run = status.last_run;
    const parts = [
      el("p", { "data-reconciliation": "on" }, "Reconciliation is on."),
      facts([
        ["Active since", status.activated_at],
        ["Checkpoint", status.checkpoint],
        ["Sweep under way", status.sweep ? `since ${status.sweep.started_at}, offset ${status.sweep.offset}` : "none"],
        ["Next run", status.next_run_at],
        ["API failures in a row", status.api_failures_in_a_row],
        ["Sessions remembered", status.sessions_remembered],
        ["Gaps waiting / set aside / given up", `${status.gaps_waiting} / ${status.gaps_set_aside} / ${status.gaps_given_up}`],
      ]),
      el("h3", {}, "Last run"),
      run
        ? facts([
            ["Started / finished", `${run.started_at} / ${run.finished_at}`],
            ["Ended", run.ended],
            ["Sessions checked", run.sessions_checked],
            ["Gaps found / injected", `${run.gaps_found} / ${run.events_injected}`],
            ["Set aside / gave up", `${run.set_aside} / ${run.gave_up}`],
            ["Requests", run.requests],
            ["Errors", run.errors.length ? run.errors.join("; ") : "none"],
          ])
        : el("p", {}, "No run has finished yet."),
      el("h3", {}, "Gaps set aside"),
    ];
    if (status.set_aside.length === 0) {
      parts.push(el("p", {}, "None."));
    } else {
      parts.push(
        el(
          "div",
          { class: "table-wrap" },
          el(
            "table",
            {},
            el("thead", {}, el("tr", {}, ["Session", "Gap", "Status", "Why", "Tries", "Next try"].map((h) => el("th", { scope: "col" }, h)))),
            el(
              "tbody",
              {},
              status.set_aside.map((gap) =>
                el(
                  "tr",
                  {},
                  el("td", { "data-label": "Session" }, el("code", {}, gap.session_id)),
                  el("td", { "data-label": "Gap" }, el("code", {}, gap.gap)),
                  el("td", { "data-label": "Status" }, gap.status),
                  el("td", { "data-label": "Why" }, gap.failure + (gap.http_status ? ` (HTTP ${gap.http_status})` : "")),
                  el("td", { "data-label": "Tries" }, gap.tries),
                  el("td", { "data-label": "Next try" }, gap.next_try_at ?? "given up"),
                ),
              ),
            ),
          ),
        ),
      );
    }
    body.replaceChildren(...parts);
  } catch (error) {
    failed(error);
  }
}

async function erase(event) {
  event.preventDefault();
  const kind = $("er-kind").value;
  const id = $("er-id").value;
  if (!id.trim()) {
    say("Enter the subject's id.", true);
    return;
  }
  const ok = await confirmAction(`Erase everything stored about ${kind} “${id}”? This cannot be undone.`, "erase");
  if (!ok) return;
  try {
    const report = await api("POST", "/admin/erasures", { subject_kind: kind, subject_id: id });
    const erased = report.erased;
    const result = $("er-result");
    result.replaceChildren(
      el("p", { "data-erased": report.subject_kind }, `Erased the ${report.subject_kind}.`),
      facts(Object.entries(erased).map(([name, count]) => [name.replaceAll("_", " "), count ?? "—"])),
    );
    $("er-id").value = "";
    result.focus();
  } catch (error) {
    failed(error);
  }
}

// The live feed: a stream token minted by the edge for this sign-in (POST /admin/stream-token),
// sent as the WebSocket subprotocol, never in the URL. A token lives for the stream's longest
// lifetime; when the edge closes the socket for it, a new one is minted.
const live = {
  socket: null,
  wanted: false,
  async start() {
    this.wanted = true;
    $("lv-toggle").textContent = "Disconnect";
    $("lv-state").textContent = "Connecting…";
    let minted;
    try {
      minted = await api("POST", "/admin/stream-token");
    } catch (error) {
      this.wanted = false;
      $("lv-toggle").textContent = "Connect";
      $("lv-state").textContent =
        error instanceof ApiError && error.code === "stream_off"
          ? "The status stream is off: set STREAM_TOKEN_SECRET (docs/stream.md)."
          : `Could not connect: ${error.message}`;
      return;
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/v1/stream`, ["didit-edge.v1", minted.token]);
    this.socket = socket;
    socket.addEventListener("open", () => {
      $("lv-state").textContent = "Connected: statuses appear below as they arrive.";
    });
    socket.addEventListener("message", (message) => this.show(message.data));
    socket.addEventListener("close", (closed) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.wanted && (closed.code === 4001 || closed.code === 1006)) {
        setTimeout(() => this.wanted && this.start(), 1000);
        $("lv-state").textContent = "Reconnecting…";
      } else {
        this.stop();
      }
    });
  },
  show(data) {
    let status;
    try {
      status = JSON.parse(data);
    } catch {
      return;
    }
    if (status.type !== "status") return;
    const item = el(
      "li",
      { "data-event": status.event_id },
      el("strong", {}, status.status_code),
      ` ${status.subject_kind} `,
      el("code", {}, status.subject_id),
      `, risk ${status.risk_level ?? "—"}, ${new Date(status.time * 1000).toISOString()}`,
      status.test ? " (test)" : "",
      " ",
      el("code", { class: "muted" }, status.event_id),
    );
    const feed = $("lv-feed");
    feed.prepend(item);
    while (feed.children.length > 200) feed.lastElementChild.remove();
  },
  stop() {
    this.wanted = false;
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close();
    $("lv-toggle").textContent = "Connect";
    $("lv-state").textContent = "Not connected.";
  },
};

$("sign-in-form").addEventListener("submit", signIn);
$("lk-by").addEventListener("change", () => lookup.form());
$("lk-form").addEventListener("submit", (event) => lookup.submit(event));
$("sign-out").addEventListener("click", () => signOut(""));
$("dl-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  deadLetters.load(true);
});
$("dl-more").addEventListener("click", () => deadLetters.load(false));
$("dl-replay-all").addEventListener("click", () => deadLetters.replayShown());
$("er-form").addEventListener("submit", erase);
$("lv-toggle").addEventListener("click", () => (live.wanted ? live.stop() : live.start()));
addEventListener("hashchange", () => session && route());
start();
