// Counting what Cloudflare bills, around any Worker's module, without changing it
// (scripts/bench_cost.py). One generic module, used identically for didit-edge and for the JS
// baseline: a generated entry imports the target's module and re-exports
//
//   export default instrumentEntry(target.default);
//   export const Inbox = instrumentObject(target.Inbox, "Inbox");   // each Durable Object class
//
// What is counted, and how:
// - a Worker invocation: each fetch/scheduled of the default export;
// - a Durable Object request: each fetch into an object (every stub call lands as one), each
//   alarm, each WebSocket message (billed at 20:1; counted here one by one);
// - SQLite rows read and written: the `rowsRead` / `rowsWritten` counters of every cursor
//   `storage.sql.exec` returned (the object's constructor gets a Proxy of `state` whose
//   `storage` is a Proxy whose `sql` is a Proxy whose `exec` keeps each cursor); the cursors
//   are summed when the object goes idle (Rust and JS both consume a cursor synchronously,
//   right after `exec`);
// - `storage.setAlarm()` (billed as one row written each), `storage.deleteAlarm()` and
//   `storage.deleteAll()` (after which Cloudflare bills no stored data for the object);
// - subrequests: every `globalThis.fetch` (stub calls are not fetches; they are counted as the
//   Durable Object requests they become);
// - Durable Object active wall time (billed duration): per object, the time during which at
//   least one handler runs or one `state.waitUntil` promise is pending, i.e. the union of the
//   intervals of concurrent requests;
// - bytes kept: `storage.sql.databaseSize` of the object when it goes idle;
// - custom log lines: each `console.log`/`info`/`warn`/`error`/`debug` call of the Worker's
//   code (Workers Logs bills each as a log event, besides each invocation's own log).
//
// Every function of `state`, `storage` and `sql` other than those is the real one, bound to
// the real target (native methods refuse a Proxy as `this`).
//
// Output: one line `{"cost":{...}}` (console.log) when a Worker invocation has finished (its
// `ctx.waitUntil` promises included) and each time an object goes idle; every count in a
// line is what happened since the previous line about the same object (subrequests: in the
// isolate), so a window's totals are the sums of its lines. Time is workerd's `Date.now()`,
// which advances with I/O (as on Cloudflare); handlers here all end with I/O.

import { WorkerEntrypoint } from "cloudflare:workers";

let subrequests = 0;
let subrequestsLogged = 0;
const realFetch = globalThis.fetch;
globalThis.fetch = function fetch(...args) {
  subrequests += 1;
  return realFetch.apply(globalThis, args);
};

function takeSubrequests() {
  const delta = subrequests - subrequestsLogged;
  subrequestsLogged = subrequests;
  return delta;
}

let logLines = 0;
let logLinesLogged = 0;
const realLog = console.log.bind(console);
for (const level of ["log", "info", "warn", "error", "debug"]) {
  const real = console[level].bind(console);
  console[level] = function (...args) {
    logLines += 1;
    return real(...args);
  };
}

function takeLogLines() {
  const delta = logLines - logLinesLogged;
  logLinesLogged = logLines;
  return delta;
}

function emit(record) {
  realLog(JSON.stringify({ cost: { ...record, log_lines: takeLogLines() } }));
}

// A Proxy of a native object whose methods are the real ones bound to it, except `overrides`
// (name -> function of the real target returning the replacement) and `wrapped` (name -> value
// to return instead of the property).
function proxied(target, overrides = {}) {
  return new Proxy(target, {
    get(real, name) {
      if (Object.prototype.hasOwnProperty.call(overrides, name)) {
        return overrides[name](real);
      }
      const value = Reflect.get(real, name, real);
      return typeof value === "function" ? value.bind(real) : value;
    },
    set(real, name, value) {
      return Reflect.set(real, name, value, real);
    },
  });
}

// One object's counters, its Proxy of `state`, and its active time.
class ObjectRecord {
  constructor(className, state) {
    this.className = className;
    this.state = state;
    this.id = state.id.toString();
    this.resetCounts();
    this.active = 0;
    this.activeSince = 0;
    const record = this;
    let sqlProxy = null;
    let storageProxy = null;
    const sqlOverrides = {
      exec: (sql) =>
        function exec(...args) {
          // A cursor counts only the last statement of a statement list (checked: a schema of
          // eight statements in one exec reported 3 rows written of 21). A list without
          // bindings (schemas, migrations; neither Worker puts `;` inside a literal there) is
          // run one statement at a time, so that every row is counted; the last cursor is
          // returned, as exec would.
          const statements =
            args.length === 1 && typeof args[0] === "string"
              ? args[0].split(";").filter((statement) => statement.trim() !== "")
              : [args[0]];
          if (statements.length > 1) {
            let cursor = null;
            for (const statement of statements) {
              // Run to its end before the next one starts; the last is left to the caller.
              if (cursor) cursor.toArray();
              cursor = sql.exec(statement);
              record.statements += 1;
              record.cursors.push(cursor);
            }
            return cursor;
          }
          const cursor = sql.exec(...args);
          record.statements += 1;
          record.cursors.push(cursor);
          return cursor;
        },
    };
    const storageOverrides = {
      sql: (storage) => {
        if (!sqlProxy) sqlProxy = proxied(storage.sql, sqlOverrides);
        return sqlProxy;
      },
      setAlarm: (storage) =>
        function setAlarm(...args) {
          record.setAlarm += 1;
          return storage.setAlarm(...args);
        },
      deleteAlarm: (storage) =>
        function deleteAlarm(...args) {
          record.deleteAlarm += 1;
          return storage.deleteAlarm(...args);
        },
      deleteAll: (storage) =>
        function deleteAll(...args) {
          record.deleteAll += 1;
          return storage.deleteAll(...args);
        },
    };
    this.stateProxy = proxied(state, {
      storage: (real) => {
        if (!storageProxy) storageProxy = proxied(real.storage, storageOverrides);
        return storageProxy;
      },
      waitUntil: (real) =>
        function waitUntil(promise) {
          record.begin();
          Promise.resolve(promise).finally(() => record.end());
          return real.waitUntil(promise);
        },
    });
  }

  begin() {
    if (this.active === 0) this.activeSince = Date.now();
    this.active += 1;
  }

  end() {
    this.active -= 1;
    if (this.active > 0) return;
    const now = Date.now();
    this.activeMs += now - this.activeSince;
    this.intervals.push([this.activeSince, now]);
    this.flush();
  }

  flush() {
    let rowsRead = 0;
    let rowsWritten = 0;
    for (const cursor of this.cursors) {
      rowsRead += cursor.rowsRead;
      rowsWritten += cursor.rowsWritten;
    }
    let databaseSize = null;
    try {
      databaseSize = this.state.storage.sql.databaseSize;
    } catch {
      databaseSize = null;
    }
    emit({
      kind: "object",
      class: this.className,
      object: this.id,
      requests: this.counts,
      rows_read: rowsRead,
      rows_written: rowsWritten,
      statements: this.statements,
      set_alarm: this.setAlarm,
      delete_alarm: this.deleteAlarm,
      delete_all: this.deleteAll,
      active_ms: this.activeMs,
      intervals: this.intervals,
      subrequests: takeSubrequests(),
      database_size: databaseSize,
    });
    this.resetCounts();
  }

  // What a line reports: everything counted since the previous line about this object.
  resetCounts() {
    this.cursors = [];
    this.counts = { fetch: 0, alarm: 0, ws_message: 0, ws_close: 0, ws_error: 0 };
    this.setAlarm = 0;
    this.deleteAlarm = 0;
    this.deleteAll = 0;
    this.statements = 0;
    this.activeMs = 0;
    this.intervals = [];
  }

  // Runs one handler as one request of `kind`: active until it settles.
  async handle(kind, run) {
    this.counts[kind] += 1;
    this.begin();
    try {
      return await run();
    } finally {
      this.end();
    }
  }
}

const OBJECT_HANDLERS = {
  fetch: "fetch",
  alarm: "alarm",
  webSocketMessage: "ws_message",
  webSocketClose: "ws_close",
  webSocketError: "ws_error",
};

/** A Durable Object class whose instances count what they are billed for. */
export function instrumentObject(Inner, className) {
  class Instrumented {
    constructor(state, env) {
      this.__cost = new ObjectRecord(className, state);
      // The constructor's own SQL (schemas) is counted with the first request.
      this.__inner = Reflect.construct(Inner, [this.__cost.stateProxy, env]);
    }
  }
  for (const [method, kind] of Object.entries(OBJECT_HANDLERS)) {
    if (typeof Inner.prototype[method] !== "function") continue;
    Instrumented.prototype[method] = function (...args) {
      return this.__cost.handle(kind, () => this.__inner[method](...args));
    };
  }
  Object.defineProperty(Instrumented, "name", { value: className });
  return Instrumented;
}

// An ExecutionContext whose waitUntil promises are collected.
function contextProxy(ctx, pending) {
  return proxied(ctx, {
    waitUntil: (real) =>
      function waitUntil(promise) {
        pending.push(Promise.resolve(promise).catch(() => {}));
        return real.waitUntil(promise);
      },
  });
}

async function invocation(kind, pending, run) {
  try {
    return await run();
  } finally {
    // Logged once the invocation's waitUntil promises have settled too (the subrequests they make).
    const settle = async () => {
      while (pending.length) await pending.shift();
      emit({ kind: "worker", event: kind, subrequests: takeSubrequests() });
    };
    settle();
  }
}

/** The default export, with each fetch/scheduled counted as one Worker invocation. */
export function instrumentEntry(Inner) {
  if (typeof Inner === "function") {
    // A WorkerEntrypoint class (worker-build's output: a Proxy with a construct trap).
    class Instrumented extends WorkerEntrypoint {
      constructor(ctx, env) {
        super(ctx, env);
        this.__pending = [];
        this.__inner = Reflect.construct(Inner, [contextProxy(ctx, this.__pending), env]);
      }
    }
    for (const method of ["fetch", "scheduled"]) {
      if (typeof Inner.prototype[method] !== "function") continue;
      Instrumented.prototype[method] = function (arg) {
        return invocation(method, this.__pending, () => this.__inner[method](arg));
      };
    }
    return Instrumented;
  }
  // A plain handler object: fetch(request, env, ctx).
  const handlers = {};
  for (const method of ["fetch", "scheduled"]) {
    if (typeof Inner[method] !== "function") continue;
    handlers[method] = (arg, env, ctx) => {
      const pending = [];
      return invocation(method, pending, () => Inner[method](arg, env, contextProxy(ctx, pending)));
    };
  }
  return handlers;
}
