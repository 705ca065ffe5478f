// The JS Worker a Cloudflare user would otherwise write for didit-edge's path, kept small and
// honest as a yardstick (scripts/bench_compare.py): verify Didit's X-Signature with WebCrypto,
// claim and store the event in one SQLite Durable Object per subject before answering, and
// deliver it from the object's alarm, signed per Standard Webhooks. Vars: DIDIT_WEBHOOK_SECRET,
// ORIGIN_SIGNING_SECRET (whsec_…), ORIGIN_URL, or ORIGIN_URLS (comma-separated: every event goes
// to each; an origin that took it is noted, so a retry goes only to those that did not).

const encoder = new TextEncoder();

function json(status, value) {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function refuse(status, code) {
  return json(status, { error: { code, message: code } });
}

function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function hmacKey(raw) {
  return crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
}

function fromHex(text) {
  if (!/^[0-9a-fA-F]{64}$/.test(text)) return null;
  const bytes = new Uint8Array(32);
  for (let i = 0; i < 32; i++) bytes[i] = parseInt(text.substr(i * 2, 2), 16);
  return bytes;
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/healthz") return json(200, { status: "ok" });
    if (url.pathname !== "/webhooks/didit") return refuse(404, "not_found");
    if (request.method !== "POST") return refuse(405, "method_not_allowed");
    const body = await request.arrayBuffer();
    const tag = fromHex((request.headers.get("x-signature") || "").trim());
    if (!tag) return refuse(401, "missing_signature");
    const key = await hmacKey(encoder.encode(env.DIDIT_WEBHOOK_SECRET));
    if (!(await crypto.subtle.verify("HMAC", key, tag, body))) return refuse(401, "invalid_signature");
    let payload;
    try {
      payload = JSON.parse(new TextDecoder().decode(body));
    } catch {
      return refuse(400, "malformed_json");
    }
    const now = Math.floor(Date.now() / 1000);
    if (typeof payload.timestamp !== "number" || Math.abs(now - payload.timestamp) > 600) {
      return refuse(401, "stale_timestamp");
    }
    const subject = payload.session_id || payload.vendor_data;
    if (!subject || !payload.webhook_type) return refuse(400, "missing_field");
    const key_text = `${subject}|${payload.webhook_type}|${payload.timestamp}|${payload.status ?? ""}`;
    const id = "evt_" + hex(await crypto.subtle.digest("SHA-256", encoder.encode(key_text))).slice(0, 32);
    const event = JSON.stringify({
      specversion: "1.0",
      id,
      source: "https://didit.me",
      type: `me.didit.${payload.webhook_type}`,
      subject,
      time: new Date(payload.timestamp * 1000).toISOString(),
      datacontenttype: "application/json",
      data: { status: payload.status ?? null, payload },
    });
    const inbox = env.INBOX.get(env.INBOX.idFromName(subject));
    const answer = await inbox.fetch("https://inbox/claim", {
      method: "POST",
      body: JSON.stringify({ id, event }),
    });
    return new Response(answer.body, { status: answer.status, headers: { "content-type": "application/json" } });
  },
};

export class Inbox {
  constructor(state, env) {
    this.state = state;
    this.env = env;
    this.sql = state.storage.sql;
    this.sql.exec(
      "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, event TEXT, delivered INTEGER NOT NULL DEFAULT 0, done TEXT)",
    );
  }

  async fetch(request) {
    const { id, event } = await request.json();
    if (this.sql.exec("SELECT 1 FROM events WHERE id = ?", id).toArray().length) {
      return json(200, { status: "duplicate", id });
    }
    this.sql.exec("INSERT INTO events (id, event) VALUES (?, ?)", id, event);
    await this.state.storage.setAlarm(Date.now());
    return json(200, { status: "accepted", id });
  }

  async alarm() {
    const secret = Uint8Array.from(atob(this.env.ORIGIN_SIGNING_SECRET.replace(/^whsec_/, "")), (c) =>
      c.charCodeAt(0),
    );
    const key = await hmacKey(secret);
    const origins = (this.env.ORIGIN_URLS || this.env.ORIGIN_URL).split(",").map((url) => url.trim());
    for (const row of this.sql.exec("SELECT id, event, done FROM events WHERE delivered = 0 ORDER BY seq").toArray()) {
      const done = row.done ? JSON.parse(row.done) : [];
      const before = done.length;
      for (const url of origins) {
        if (done.includes(url)) continue;
        const timestamp = Math.floor(Date.now() / 1000);
        const mac = await crypto.subtle.sign("HMAC", key, encoder.encode(`${row.id}.${timestamp}.${row.event}`));
        const signature = btoa(String.fromCharCode(...new Uint8Array(mac)));
        try {
          const answer = await fetch(url, {
            method: "POST",
            redirect: "manual",
            headers: {
              "content-type": "application/cloudevents+json",
              "webhook-id": row.id,
              "webhook-timestamp": String(timestamp),
              "webhook-signature": `v1,${signature}`,
            },
            body: row.event,
          });
          if (answer.status >= 200 && answer.status < 300) done.push(url);
        } catch {
          // not delivered: retried below
        }
      }
      if (done.length < origins.length) {
        // Who has it already is noted, so the retry goes only to the others.
        if (done.length > before) this.sql.exec("UPDATE events SET done = ? WHERE id = ?", JSON.stringify(done), row.id);
        await this.state.storage.setAlarm(Date.now() + 5000);
        return;
      }
      this.sql.exec("UPDATE events SET delivered = 1, event = NULL, done = NULL WHERE id = ?", row.id);
    }
  }
}
