# Log-based metrics and alert policies, one set per chain (docs/OPERATIONS.md "Alerts"). The filters
# (modules/settings: log_filters) read the fields as they arrive from both the function (Cloud Run
# stdout) and the VM agent (journald through the Ops Agent, infra/ops-agent/config.yaml), scoped to
# this chain's function and systemd unit. Every policy notifies local.notification_channels
# (notifications.tf).
#
# Six policies, each ALERT event paging through exactly one of them:
#   login required  - login_required (log match; this policy owns that page)
#   re-login link   - relogin_link (log match; delivers the link). A policy of its own because the
#                     rate limit is per policy: sharing one with login_required (logged seconds
#                     before or after it) would drop whichever came second.
#   chain deadline  - chain_deadline (log match; the refresh token dies soon, nothing refreshed it)
#   refresh ALERT   - every other ALERT event, e.g. "Token refresh failed N consecutive times!" (log match)
#   agent not checking in - per VM: no agent_checkin for agent_checkin_absent_minutes, or a crash loop
#   no refresh      - no token_refreshed from either side for refresh_absent_minutes
#
# Limits of log-match policies (cloud.google.com/monitoring/alerts/log-based-incidents): at most one
# notification per 5 minutes and 20 a day per policy; a log entry matching an open incident only
# re-notifies. notification_rate_limit (required for log-match policies) is set per policy so a day
# of repeats stays inside 20: the code repeats login_required every 15 min and the refresh ALERT at
# every 5th failure. Liveness and "no refresh" are metric policies, which have no such cap.
locals {
  alert_events = module.settings.alert_events
  env          = var.saxo_environment
  runbook      = "docs/OPERATIONS.md, \"When the chain dies\""
}

resource "google_logging_metric" "refresh_alert" {
  project     = var.project_id
  name        = local.names.metric_refresh_alert
  description = "${var.name_prefix} ALERT events paged by the refresh ALERT policy: ${join(", ", local.alert_events)} and any other ALERT without a policy of its own."
  filter      = module.settings.log_filters.alert

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "event"
      value_type  = "STRING"
      description = join(", ", local.alert_events)
    }
  }

  label_extractors = {
    event = "EXTRACT(jsonPayload.event)"
  }

  depends_on = [google_project_service.api]
}

# Every successful refresh, whoever made it: an absence means both paths are down.
resource "google_logging_metric" "token_refreshed" {
  project     = var.project_id
  name        = local.names.metric_token_refreshed
  description = "${var.name_prefix} token_refreshed events (function or agent)."
  filter      = module.settings.log_filters.refreshed

  # `by` is agent:<host>:<pid> or cloud:<revision>:<run>: the label keeps the first two parts, so a
  # restart or a run does not start a new time series.
  label_extractors = {
    by = "REGEXP_EXTRACT(jsonPayload.by, \"^([^:]+:[^:]+)\")"
  }

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "by"
      value_type  = "STRING"
      description = "who refreshed: agent:<host> or cloud:<revision>"
    }
  }

  depends_on = [google_project_service.api]
}

# The VM agent's liveness (agent/checkin.ts, every 2 min) and its starts, per host: the label is the
# host name the agent logs, which survives restarts (a pid would start a new series each time).
resource "google_logging_metric" "agent_checkin" {
  project     = var.project_id
  name        = local.names.metric_agent_checkin
  description = "${var.name_prefix} agent_checkin events (VM agent liveness, every 2 min)."
  filter      = module.settings.log_filters.checkin

  label_extractors = {
    host = "EXTRACT(jsonPayload.host)"
  }

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "host"
      value_type  = "STRING"
      description = "the VM's host name"
    }
  }

  depends_on = [google_project_service.api]
}

resource "google_logging_metric" "agent_started" {
  project     = var.project_id
  name        = local.names.metric_agent_started
  description = "${var.name_prefix} agent_starting events (VM agent starts: a crash loop shows here)."
  filter      = module.settings.log_filters.started

  label_extractors = {
    host = "EXTRACT(jsonPayload.host)"
  }

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "host"
      value_type  = "STRING"
      description = "the VM's host name"
    }
  }

  depends_on = [google_project_service.api]
}

# A new log-based metric can take minutes to become visible to Monitoring; an alert policy created
# right after it fails with "Cannot find metric(s) that match type" (hashicorp/terraform-provider-google#11102).
resource "time_sleep" "metrics_visible" {
  create_duration = "180s"
  depends_on      = [google_logging_metric.refresh_alert, google_logging_metric.token_refreshed, google_logging_metric.agent_checkin, google_logging_metric.agent_started]
}

resource "google_monitoring_alert_policy" "login_required" {
  project               = var.project_id
  display_name          = "${local.names.alert_policy_prefix} ${local.env} login required"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "login_required logged"
    condition_matched_log {
      filter = module.settings.log_filters.login
      label_extractors = {
        deadline = "EXTRACT(jsonPayload.deadline)"
      }
    }
  }

  alert_strategy {
    # login_required repeats every 15 min while it lasts: 4 an hour at most, the first at once.
    notification_rate_limit {
      period = "300s"
    }
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "token-keeper ${local.env}: login required (${var.name_prefix})"
    content   = "**${local.env} chain ${var.name_prefix}: login required.** Nothing can refresh the Saxo token until a person signs in again; the bots stop when their access token ends. Deadline (UTC): $${log.extracted_label.deadline}.\n\n**Action:** open the re-login link (it comes in its own notification, \"re-login link\"; one use, 15 minutes) on a phone. No link, or it is used: `npx token-keeper login --link` (any machine with gcloud) or `npx token-keeper login` on a laptop. See ${local.runbook}."
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "relogin_link" {
  project               = var.project_id
  display_name          = "${local.names.alert_policy_prefix} ${local.env} re-login link"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "relogin_link logged"
    condition_matched_log {
      filter = module.settings.log_filters.relogin
      # Each link is a new value: its own notification, the link in its text.
      label_extractors = {
        link     = "EXTRACT(jsonPayload.link)"
        deadline = "EXTRACT(jsonPayload.deadline)"
      }
    }
  }

  alert_strategy {
    # One link per login needed (plus `login --link`, itself rate-limited): far below 20 a day.
    notification_rate_limit {
      period = "300s"
    }
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "token-keeper ${local.env}: re-login link (${var.name_prefix})"
    content   = "**${local.env} chain ${var.name_prefix}: the chain needs a login.** Deadline (UTC): $${log.extracted_label.deadline}.\n\n**Action:** open $${log.extracted_label.link} on your phone (one use, valid 15 minutes), confirm, and sign in to Saxo ${local.env} with the chain's own account. Used or expired: the page offers a new link, or run `npx token-keeper login --link`. See ${local.runbook}."
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "chain_deadline" {
  project               = var.project_id
  display_name          = "${local.names.alert_policy_prefix} ${local.env} chain deadline"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "chain_deadline logged"
    condition_matched_log {
      filter = module.settings.log_filters.deadline
      label_extractors = {
        deadline = "EXTRACT(jsonPayload.deadline)"
      }
    }
  }

  alert_strategy {
    # One per refresh token from the agent; the function repeats each run in the last window.
    notification_rate_limit {
      period = "900s"
    }
    auto_close = "3600s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "token-keeper ${local.env}: the chain dies at $${log.extracted_label.deadline} UTC (${var.name_prefix})"
    content   = "**${local.env} chain ${var.name_prefix}: the chain dies at $${log.extracted_label.deadline} (UTC) unless a refresh succeeds.** The refresh token is close to its end and no refresh has succeeded.\n\n**Action:** run `npx token-keeper refresh` on the VM (or `gcloud scheduler jobs run ${local.names.scheduler_job}`); if it fails, `npx token-keeper doctor`. Once the deadline has passed the chain needs a login (the re-login link of the login-required alert). See ${local.runbook}."
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "refresh_alert" {
  project               = var.project_id
  display_name          = "${local.names.alert_policy_prefix} ${local.env} refresh ALERT"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "ALERT event logged"
    condition_matched_log {
      filter = module.settings.log_filters.alert
      label_extractors = {
        event    = "EXTRACT(jsonPayload.event)"
        deadline = "EXTRACT(jsonPayload.deadline)"
      }
    }
  }

  alert_strategy {
    # The ALERT comes at the 5th, 10th, 15th... consecutive failure: at most one page an hour keeps a
    # day of failures at 24 or fewer tries, the 20 a day Google sends still spread over the day.
    notification_rate_limit {
      period = "3600s"
    }
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "token-keeper ${local.env}: $${log.extracted_label.event} (${var.name_prefix})"
    content   = "**${local.env} chain ${var.name_prefix}: $${log.extracted_label.event}.** token-keeper could not refresh the Saxo token or store it. The chain dies at $${log.extracted_label.deadline} (UTC) unless a refresh succeeds.\n\n**Action:** run `npx token-keeper doctor` on the VM and fix what it names; if the chain has died, log in again (the login-required alert carries the re-login link). See ${local.runbook}."
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "agent_not_checking_in" {
  project               = var.project_id
  display_name          = "${local.names.alert_policy_prefix} ${local.env} agent not checking in"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "no agent_checkin for ${var.agent_checkin_absent_minutes} min (per VM)"
    condition_absent {
      filter   = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.agent_checkin.name}\" AND resource.type=\"gce_instance\""
      duration = "${var.agent_checkin_absent_minutes * 60}s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.host"]
      }
      trigger {
        count = 1
      }
    }
  }

  conditions {
    display_name = "agent started more than ${var.agent_crash_loop_starts} times in 10 min (per VM)"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.agent_started.name}\" AND resource.type=\"gce_instance\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.agent_crash_loop_starts
      duration        = "0s"
      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.host"]
      }
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "token-keeper ${local.env}: agent on $${metric.label.host} not checking in (${var.name_prefix})"
    content   = "**${local.env} chain ${var.name_prefix}: the VM agent on $${metric.label.host} stopped checking in or is restarting in a loop.** With the agent down its bots may present a refresh token the cloud already consumed; the refresh token dies about 60 minutes after the last refresh.\n\n**Action:** on the VM, `systemctl status ${var.agent_systemd_unit}` and `journalctl -u ${var.agent_systemd_unit} -n 50 -o cat`; then `npx token-keeper doctor`. See ${local.runbook}."
  }

  depends_on = [time_sleep.metrics_visible]
}

resource "google_monitoring_alert_policy" "refresh_absent" {
  project               = var.project_id
  display_name          = "${local.names.alert_policy_prefix} ${local.env} no refresh for ${var.refresh_absent_minutes} min"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "no token_refreshed event"
    condition_absent {
      filter   = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.token_refreshed.name}\" AND resource.type=one_of(\"cloud_run_revision\",\"gce_instance\")"
      duration = "${var.refresh_absent_minutes * 60}s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "token-keeper ${local.env}: no refresh for ${var.refresh_absent_minutes} min (${var.name_prefix})"
    content   = "**${local.env} chain ${var.name_prefix}:** neither the function nor the VM agent logged a token refresh for ${var.refresh_absent_minutes} minutes. The Saxo refresh token lives about 60 minutes after the last refresh: act now. **Action:** `npx token-keeper doctor` on the VM; `gcloud scheduler jobs run ${local.names.scheduler_job}`. See ${local.runbook}."
  }

  depends_on = [time_sleep.metrics_visible]
}
