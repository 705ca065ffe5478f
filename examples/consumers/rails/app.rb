# Receives didit-edge events correctly in Rails: one file, Debian's Rails 6.1 packages, no Bundler.
#
# 1. Verify: Standard Webhooks (`webhook-signature` over "id.timestamp.body" with the origin's
#    `whsec_…` secret, the timestamp within 5 minutes); anything else is 401. Here with the
#    few lines of the spec (StandardWebhooksCheck); with the `standardwebhooks` gem installed,
#    `StandardWebhooks::Webhook.new(secret).verify(body, headers)` does the same (README.md).
# 2. Once per `webhook-id`: ProcessedEvent has a unique index on webhook_id and is created in
#    the same transaction as the effect; a duplicate (ActiveRecord::RecordNotUnique) is
#    answered 200 and changes nothing.
# 3. Newest wins: a subject's decision remembers the event `time` it came from; an older event
#    (a dead letter replayed after a newer one) is recorded as stale and changes nothing.
# 4. Risk: approved with `data.risk.level` low -> approve; medium -> review queue; high -> block;
#    anything else -> only the status is recorded.
# 5. Answer fast: the effect and its outbox row are committed before the 2xx; the slow work (a
#    notification here) is an ActiveJob run after the answer, and outbox rows a crash left undone
#    are enqueued again at start. At least once: give the real call the webhook-id as its
#    idempotency key.
#
# Settings (environment): DIDIT_EDGE_SIGNING_SECRET (required, `whsec_…`), RECIPE_DB (SQLite
# file, default didit_events.db), SLOW_WORK_SECONDS (the simulated slow call, default 2).
ENV["RAILS_ENV"] ||= "production"

require "base64"
require "json"
require "logger"
require "openssl"
require "securerandom"
require "rails"
require "active_record"
require "active_record/connection_adapters/sqlite3_adapter"
require "active_job"
require "action_controller/railtie"

SIGNING_SECRET = ENV.fetch("DIDIT_EDGE_SIGNING_SECRET")
SLOW_WORK_SECONDS = Float(ENV.fetch("SLOW_WORK_SECONDS", "2"))

# The Standard Webhooks check, as the spec (https://www.standardwebhooks.com/) writes it.
module StandardWebhooksCheck
  class Error < StandardError; end
  TOLERANCE_SECS = 5 * 60

  def self.verify!(secret, body, headers)
    id, timestamp, signatures = headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"]
    raise Error, "missing headers" unless id && timestamp && signatures
    raise Error, "timestamp" unless timestamp.match?(/\A\d+\z/) && (Time.now.to_i - timestamp.to_i).abs <= TOLERANCE_SECS
    key = Base64.decode64(secret.delete_prefix("whsec_"))
    expected = Base64.strict_encode64(OpenSSL::HMAC.digest("SHA256", key, "#{id}.#{timestamp}.#{body}"))
    matched = signatures.split(" ").any? do |versioned|
      version, signature = versioned.split(",", 2)
      version == "v1" && signature && ActiveSupport::SecurityUtils.secure_compare(signature, expected)
    end
    raise Error, "no matching signature" unless matched
    JSON.parse(body)
  end
end

# SQLite keeps the recipe self-contained; on PostgreSQL or MySQL nothing below changes but this.
# A writer waiting for SQLite's lock must let other threads run: the sqlite3 gem's busy_timeout
# waits holding Ruby's global lock, so the thread holding SQLite's lock could never commit
# (Rails 8 with the sqlite3 2.x gem waits without it: `busy_handler_timeout`). Here: a busy
# handler that sleeps, for up to 30 s.
module SleepingBusyHandler
  def configure_connection
    super
    @connection.busy_handler { |tries| tries < 3000 && (sleep(0.01) || true) }
  end
end
ActiveRecord::ConnectionAdapters::SQLite3Adapter.prepend(SleepingBusyHandler)
ActiveRecord::Base.logger = nil
ActiveRecord::Base.establish_connection(adapter: "sqlite3", database: ENV.fetch("RECIPE_DB", "didit_events.db"),
                                        pool: 32)
ActiveRecord::Base.connection.execute("PRAGMA journal_mode = WAL")
ActiveRecord::Schema.verbose = false
ActiveRecord::Schema.define do
  create_table :processed_events, if_not_exists: true do |t|
    t.string :webhook_id, null: false
    t.string :subject, null: false
    t.string :event_time, null: false
    t.string :outcome, null: false          # approved, review, blocked, recorded, stale
    t.float :received_at, null: false
  end
  add_index :processed_events, :webhook_id, unique: true, if_not_exists: true   # the guard
  create_table :decisions, if_not_exists: true do |t|
    t.string :subject, null: false          # "<kind>:<id>", e.g. session:1111…
    t.string :status_code
    t.string :risk_level, null: false
    t.string :decision, null: false         # approved, review, blocked, pending
    t.string :event_id, null: false
    t.string :event_time, null: false       # the event `time` this decision came from
    t.float :updated_at, null: false
  end
  add_index :decisions, :subject, unique: true, if_not_exists: true
  create_table :review_queue, if_not_exists: true do |t|
    t.string :subject, null: false
    t.string :webhook_id, null: false
    t.text :signals, null: false            # data.risk.signals, for the reviewer
    t.float :created_at, null: false
  end
  create_table :outbox, if_not_exists: true do |t|  # slow work, committed with the effect
    t.string :webhook_id, null: false
    t.string :action, null: false
    t.string :subject, null: false
    t.float :done_at
  end
  add_index :outbox, :webhook_id, if_not_exists: true
  create_table :notifications, if_not_exists: true do |t|  # stands in for the outside world
    t.string :webhook_id, null: false
    t.string :action, null: false
    t.string :subject, null: false
    t.float :sent_at, null: false
  end
end

class ProcessedEvent < ActiveRecord::Base; end
class Decision < ActiveRecord::Base
  self.record_timestamps = false
end
class ReviewItem < ActiveRecord::Base
  self.table_name = "review_queue"
  self.record_timestamps = false
end
class OutboxItem < ActiveRecord::Base
  self.table_name = "outbox"
end
class Notification < ActiveRecord::Base; end
# Column information read now, not by a request's first statement inside its transaction.
[ProcessedEvent, Decision, ReviewItem, OutboxItem, Notification].each(&:columns_hash)

module Events
  def self.decide(data)
    level = data.dig("risk", "level") || "unknown"
    return ["blocked", "alert_fraud_team"] if level == "high"
    return ["review", "notify_reviewers"] if level == "medium"
    return ["approved", "welcome_user"] if level == "low" && %w[approved active].include?(data["status_code"])
    ["pending", nil]
  end

  # Records the event and its effect in one transaction; returns what happened.
  def self.apply(webhook_id, event)
    data = event.fetch("data")
    subject = "#{data['subject']['kind']}:#{data['subject']['id']}"
    ActiveRecord::Base.transaction do
      # The first statement writes, so SQLite takes the write lock at once: a concurrent copy
      # waits here and then fails on the unique index.
      record = ProcessedEvent.create!(webhook_id: webhook_id, subject: subject, event_time: event["time"],
                                      outcome: "pending", received_at: Time.now.to_f)
      current = Decision.find_by(subject: subject)
      if current && Time.iso8601(event["time"]) < Time.iso8601(current.event_time)
        outcome = "stale"  # a newer event already decided this subject
      else
        decision, action = decide(data)
        current ||= Decision.new(subject: subject)
        current.update!(status_code: data["status_code"], risk_level: data.dig("risk", "level"), decision: decision,
                        event_id: webhook_id, event_time: event["time"], updated_at: Time.now.to_f)
        if decision == "review"
          ReviewItem.create!(subject: subject, webhook_id: webhook_id, signals: data.dig("risk", "signals").to_json,
                             created_at: Time.now.to_f)
        end
        OutboxItem.create!(webhook_id: webhook_id, action: action, subject: subject) if action
        outcome = decision == "pending" ? "recorded" : decision
      end
      record.update!(outcome: outcome)
      outcome
    end
  rescue ActiveRecord::RecordNotUnique
    # Only the webhook-id's index makes it a duplicate; any other conflict is a 500 (retried).
    raise unless ProcessedEvent.exists?(webhook_id: webhook_id)
    "duplicate"
  end
end

# After the answer: the slow call, then the outbox row marked done.
class SlowWorkJob < ActiveJob::Base
  def perform(webhook_id)
    ActiveRecord::Base.connection_pool.with_connection do
      OutboxItem.where(webhook_id: webhook_id, done_at: nil).each do |item|
        sleep SLOW_WORK_SECONDS  # e.g. a mail provider or CRM call
        ActiveRecord::Base.transaction do
          # Here the "call" is local, so it can share the transaction; a real one cannot.
          if OutboxItem.where(id: item.id, done_at: nil).update_all(done_at: Time.now.to_f) == 1
            Notification.create!(webhook_id: webhook_id, action: item.action, subject: item.subject,
                                 sent_at: Time.now.to_f)
          end
        end
      end
    end
  end
end

class EventsController < ActionController::API
  def create
    body = request.raw_post
    event = StandardWebhooksCheck.verify!(SIGNING_SECRET, body, request.headers)
    webhook_id = request.headers["webhook-id"]
    outcome = Events.apply(webhook_id, event)
    SlowWorkJob.perform_later(webhook_id) if %w[approved review blocked].include?(outcome)
    render json: { status: outcome }
  rescue StandardWebhooksCheck::Error, JSON::ParserError
    render json: { error: "invalid signature" }, status: :unauthorized
  end

  def health
    render json: { ok: true }
  end
end

class RecipeApp < Rails::Application
  config.root = __dir__
  config.eager_load = false
  config.cache_classes = true
  config.api_only = true
  config.secret_key_base = SecureRandom.hex(64)  # no sessions or cookies: never used
  config.logger = Logger.new($stdout)
  config.log_level = :warn
  config.cache_store = :null_store
end
RecipeApp.initialize!
RecipeApp.routes.draw do
  post "/didit-events", to: "events#create"
  get "/healthz", to: "events#health"
end
ActiveJob::Base.queue_adapter = :async
ActiveJob::Base.logger = Logger.new(nil)

# Slow work a crash interrupted.
OutboxItem.where(done_at: nil).distinct.pluck(:webhook_id).each { |webhook_id| SlowWorkJob.perform_later(webhook_id) }
