# Everything the token-keeper module derives from its inputs, with no provider and no resource:
# every name that must be unique in a project, the scheduler's period, and the environment of the
# function and of each VM's agent. The parent module (infra/terraform) passes its variables through;
# the validations live here, once. Being provider-free, test/unit/infra-*.test.ts evaluates this
# module with the real terraform binary offline (two prefixes, bad inputs, the primary VM).

terraform {
  required_version = ">= 1.5"
}

variable "project_id" {
  type = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id: a GCP project id (6-30 chars, lowercase letters, digits, dashes)."
  }
}

variable "region" {
  type = string
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region: a GCP region such as us-east1."
  }
}

variable "relogin_base_url" {
  # Phone re-login (infra/terraform/relogin.tf): the relogin service's origin. null = not deployed.
  type     = string
  nullable = true
  validation {
    condition     = var.relogin_base_url == null ? true : can(regex("^https://[a-z0-9.-]+$", var.relogin_base_url))
    error_message = "relogin_base_url: an https:// origin without a path, e.g. https://tk-relogin-123456789012.europe-west1.run.app."
  }
}

variable "name_prefix" {
  type = string
  validation {
    # Service account ids are <prefix>-sched etc. (6-30 chars, ending with a letter or digit).
    condition     = can(regex("^[a-z][a-z0-9-]{1,16}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix: 3-18 chars, lowercase letters, digits and dashes, starting with a letter and not ending with a dash."
  }
}

variable "token_secret_id" {
  type     = string
  nullable = true
  validation {
    condition     = var.token_secret_id == null ? true : can(regex("^[A-Za-z0-9_-]{1,255}$", var.token_secret_id))
    error_message = "token_secret_id: letters, digits, dashes and underscores."
  }
}

variable "topic_id" {
  type     = string
  nullable = true
  validation {
    # Subscriptions are <topic_id>-<vm> (VM names up to 63 chars) and Pub/Sub names end at 255.
    condition     = var.topic_id == null ? true : can(regex("^[a-zA-Z][a-zA-Z0-9._~+%-]{2,189}$", var.topic_id)) && !startswith(coalesce(var.topic_id, "x"), "goog")
    error_message = "topic_id: 3-190 chars, starting with a letter, not with \"goog\"."
  }
}

variable "use_app_secret" {
  type = bool
}

variable "vm_names" {
  type = list(string)
  validation {
    condition     = length(var.vm_names) > 0 && length(distinct(var.vm_names)) == length(var.vm_names) && alltrue([for v in var.vm_names : can(regex("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", v))])
    error_message = "vm_names: at least one, no duplicates, each a Compute Engine instance name (lowercase letters, digits, dashes)."
  }
}

variable "schedule_every_minutes" {
  type = number
  validation {
    # */N in the minute field only runs at a steady period when N divides 60.
    condition     = contains([1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30], var.schedule_every_minutes)
    error_message = "schedule_every_minutes must divide 60: 1, 2, 3, 4, 5, 6, 10, 12, 15, 20 or 30."
  }
}

variable "cloud_refresh_threshold_seconds" {
  type = number
  validation {
    condition     = var.cloud_refresh_threshold_seconds > 0
    error_message = "cloud_refresh_threshold_seconds must be > 0."
  }
}

variable "refresh_threshold_seconds" {
  type = number
  validation {
    condition     = var.refresh_threshold_seconds > 0
    error_message = "refresh_threshold_seconds must be > 0."
  }
}

variable "bot_refresh_threshold_seconds" {
  type = number
  validation {
    condition     = var.bot_refresh_threshold_seconds > 0
    error_message = "bot_refresh_threshold_seconds must be > 0."
  }
}

variable "keep_secret_versions" {
  type = number
  validation {
    condition     = var.keep_secret_versions >= 1 && floor(var.keep_secret_versions) == var.keep_secret_versions
    error_message = "keep_secret_versions: an integer >= 1."
  }
}

variable "max_refresh_failures" {
  type = number
  validation {
    condition     = var.max_refresh_failures >= 1 && floor(var.max_refresh_failures) == var.max_refresh_failures
    error_message = "max_refresh_failures: an integer >= 1."
  }
}

variable "saxo_environment" {
  type = string
  validation {
    condition     = contains(["SIM", "LIVE"], var.saxo_environment)
    error_message = "saxo_environment must be SIM or LIVE."
  }
}

variable "saxo_app_key" {
  type = string
}

variable "agent_systemd_unit" {
  type = string
  validation {
    condition     = can(regex("^[A-Za-z0-9_.:-]+(@[A-Za-z0-9_.:-]+)?\\.service$", var.agent_systemd_unit))
    error_message = "agent_systemd_unit: a unit name such as token-keeper.service or token-keeper@live.service."
  }
}

locals {
  p               = var.name_prefix
  token_secret_id = coalesce(var.token_secret_id, "${local.p}-saxo-token")
  topic_id        = coalesce(var.topic_id, "${local.p}-rotated")
  function_name   = "${local.p}-refresh"

  # <prefix>-vm-<vm> when it fits the 30-char account id; else cut and made unique by a hash of the VM name.
  vm_account_ids = {
    for v in var.vm_names : v => (
      length("${local.p}-vm-${v}") <= 30 ? "${local.p}-vm-${v}" : "${substr("${local.p}-vm-${v}", 0, 25)}-${substr(md5(v), 0, 4)}"
    )
  }

  schedule_seconds = var.schedule_every_minutes * 60

  function_env = merge(
    {
      GOOGLE_CLOUD_PROJECT            = var.project_id
      TOKEN_SECRET_ID                 = local.token_secret_id
      TOKEN_TOPIC_ID                  = local.topic_id
      SAXO_ENVIRONMENT                = var.saxo_environment
      CLOUD_REFRESH_THRESHOLD_SECONDS = tostring(var.cloud_refresh_threshold_seconds)
      REFRESH_THRESHOLD_SECONDS       = tostring(var.refresh_threshold_seconds)
      BOT_REFRESH_THRESHOLD_SECONDS   = tostring(var.bot_refresh_threshold_seconds)
      CLOUD_SCHEDULE_SECONDS          = tostring(local.schedule_seconds)
      KEEP_SECRET_VERSIONS            = tostring(var.keep_secret_versions)
      MAX_REFRESH_FAILURES            = tostring(var.max_refresh_failures)
      LOG_FORMAT                      = "json"
      # The Functions Framework adds an execution_id label to every line of an invocation.
      LOG_EXECUTION_ID = "true"
    },
    var.saxo_app_key == "" ? {} : { SAXO_APP_KEY = var.saxo_app_key },
    # The function issues a phone re-login link when the chain needs a login (docs/DESIGN.md "Re-login from a phone").
    var.relogin_base_url == null ? {} : { RELOGIN_BASE_URL = var.relogin_base_url, RELOGIN_LINK_SECRET_ID = "${local.token_secret_id}-relogin" },
  )

  # Cloud Logging filters of this chain's events. Both sides log one JSON object per line with
  # `severity`, `message` and `event`, and arrive in the same shape:
  # - the function (Cloud Run stdout): Cloud Logging moves `severity` into LogEntry.severity (a
  #   structured-logging special field) and keeps the other keys in jsonPayload;
  # - the VM agent (journald -> Ops Agent, infra/ops-agent/config.yaml): parse_json on MESSAGE puts
  #   the keys in jsonPayload beside journald's own (_SYSTEMD_UNIT, ...), and modify_fields moves
  #   jsonPayload.severity into LogEntry.severity.
  # So the filters read `severity` and `jsonPayload.event`, never jsonPayload.severity, and tell the
  # chains apart by the function's Cloud Run service and the agent's systemd unit.
  # ALERT events with an alert policy of their own (infra/terraform/monitoring.tf): each pages
  # through exactly one policy. Every other ALERT event pages through the generic "refresh ALERT"
  # policy, so an ALERT added to the code later still reaches a person
  # (test/unit/infra-alerts.test.ts: every ALERT the code logs matches exactly one policy).
  login_events    = ["login_required"]
  relogin_events  = ["relogin_link"]
  deadline_events = ["chain_deadline"]
  own_events      = concat(local.login_events, local.relogin_events, local.deadline_events)
  # Known ALERT events of the generic policy (documentation only; the filter does not list them).
  alert_events = ["event_subscription_broken", "identity_mismatch", "refresh_alert", "refresh_token_missing", "relogin_wrong_account", "secret_write_lost"]
  vm_side      = "(resource.type=\"gce_instance\" AND jsonPayload._SYSTEMD_UNIT=\"${var.agent_systemd_unit}\")"
  this_chain = join(" OR ", [
    "(resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.function_name}\")",
    # The phone re-login service (relogin.tf) logs relogin_link (resend) and relogin_wrong_account.
    "(resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.p}-relogin\")",
    local.vm_side,
  ])
  any_of = { for k, events in { own = local.own_events, login = local.login_events, relogin = local.relogin_events, deadline = local.deadline_events } : k => join(" OR ", [for e in events : "jsonPayload.event=\"${e}\""]) }
  log_filters = {
    alert     = "severity=ALERT AND NOT (${local.any_of.own}) AND (${local.this_chain})"
    refreshed = "jsonPayload.event=\"token_refreshed\" AND (${local.this_chain})"
    login     = "severity=ALERT AND (${local.any_of.login}) AND (${local.this_chain})"
    relogin   = "severity=ALERT AND (${local.any_of.relogin}) AND (${local.this_chain})"
    deadline  = "severity=ALERT AND (${local.any_of.deadline}) AND (${local.this_chain})"
    # The VM agent's liveness (agent/checkin.ts) and its starts (a crash loop restarts it).
    checkin = "jsonPayload.event=\"agent_checkin\" AND ${local.vm_side}"
    started = "jsonPayload.event=\"agent_starting\" AND ${local.vm_side}"
  }

  # The first VM of vm_names is the primary: the only agent that may present a refresh token
  # without the cross-host lease while Secret Manager does not answer (docs/DESIGN.md "Several VMs").
  agent_env = {
    for i, v in var.vm_names : v => join("\n", [
      "GOOGLE_CLOUD_PROJECT=${var.project_id}",
      "TOKEN_SECRET_ID=${local.token_secret_id}",
      "TOKEN_TOPIC_ID=${local.topic_id}",
      "TOKEN_SUBSCRIPTION_ID=${local.topic_id}-${v}",
      "TOKEN_KEEPER_PRIMARY=${i == 0 ? "true" : "false"}",
      "SAXO_ENVIRONMENT=${var.saxo_environment}",
      "CLOUD_REFRESH_THRESHOLD_SECONDS=${var.cloud_refresh_threshold_seconds}",
      "REFRESH_THRESHOLD_SECONDS=${var.refresh_threshold_seconds}",
      "BOT_REFRESH_THRESHOLD_SECONDS=${var.bot_refresh_threshold_seconds}",
      # The agent's doctor judges the cloud path's silence against the Scheduler's period.
      "CLOUD_SCHEDULE_SECONDS=${local.schedule_seconds}",
      "KEEP_SECRET_VERSIONS=${var.keep_secret_versions}",
      "MAX_REFRESH_FAILURES=${var.max_refresh_failures}",
      "",
    ])
  }
}

output "names" {
  description = "Every project-unique name the module creates, derived from name_prefix (and the optional secret/topic overrides)."
  value = {
    function               = local.function_name
    scheduler_job          = local.function_name
    function_account_id    = "${local.p}-fn"
    scheduler_account_id   = "${local.p}-sched"
    build_account_id       = "${local.p}-build"
    vm_account_ids         = local.vm_account_ids
    custom_role_id         = "${replace(local.p, "-", "_")}_secretRotator"
    source_bucket          = "${var.project_id}-${local.p}-src"
    token_secret_id        = local.token_secret_id
    app_secret_id          = var.use_app_secret ? "${local.p}-saxo-app-secret" : null
    topic_id               = local.topic_id
    subscriptions          = { for v in var.vm_names : v => "${local.topic_id}-${v}" }
    metric_refresh_alert   = "${local.p}-refresh-alert"
    metric_token_refreshed = "${local.p}-token-refreshed"
    metric_agent_checkin   = "${local.p}-agent-checkin"
    metric_agent_started   = "${local.p}-agent-started"
    alert_policy_prefix    = "${local.p}:"
    function_source_zip    = "${local.p}-function-source.zip"
    relogin_service        = "${local.p}-relogin"
    relogin_account_id     = "${local.p}-relogin"
    relogin_link_secret_id = "${local.token_secret_id}-relogin"
    relogin_token_role_id  = "${replace(local.p, "-", "_")}_reloginToken"
    relogin_links_role_id  = "${replace(local.p, "-", "_")}_reloginLinks"
  }

  precondition {
    condition     = var.cloud_refresh_threshold_seconds > var.refresh_threshold_seconds && var.refresh_threshold_seconds > var.bot_refresh_threshold_seconds
    error_message = "Tiers must be ordered cloud > agent > bots: cloud_refresh_threshold_seconds > refresh_threshold_seconds > bot_refresh_threshold_seconds."
  }
}

output "schedule" {
  description = "The Cloud Scheduler cron and the same period in seconds (CLOUD_SCHEDULE_SECONDS): one source for both."
  value = {
    cron    = "*/${var.schedule_every_minutes} * * * *"
    seconds = local.schedule_seconds
  }

  precondition {
    # The cloud acts between its threshold and the agent's: at least one tick must fall in that window.
    condition     = local.schedule_seconds <= var.cloud_refresh_threshold_seconds - var.refresh_threshold_seconds
    error_message = "schedule_every_minutes * 60 must be <= cloud_refresh_threshold_seconds - refresh_threshold_seconds, or a scheduler tick can miss the cloud's window and the agent refreshes instead."
  }
}

output "log_filters" {
  description = "Cloud Logging filters of this chain's ALERT events and token_refreshed events (function and VM agent)."
  value       = local.log_filters
}

output "alert_events" {
  description = "ALERT events paged by the generic refresh ALERT policy (documentation; the filter takes every ALERT but own_alert_events)."
  value       = local.alert_events
}

output "own_alert_events" {
  description = "ALERT events with a policy of their own: login required, the re-login link, the chain deadline."
  value       = { login = local.login_events, relogin = local.relogin_events, deadline = local.deadline_events }
}

output "function_env" {
  description = "The function's environment (no secret: the app secret arrives through Secret Manager)."
  value       = local.function_env
}

output "agent_env" {
  description = "Per VM: the lines of the agent's env file that come from Terraform."
  value       = local.agent_env
}
