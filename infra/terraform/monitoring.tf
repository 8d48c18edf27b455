# Log-based metrics and alerts, one set per chain. The filters (modules/settings: log_filters) read the
# fields as they arrive from both the function (Cloud Run stdout) and the VM agent (journald through
# the Ops Agent, infra/ops-agent/config.yaml), scoped to this chain's function and systemd unit.
locals {
  alert_events = module.settings.alert_events
}

resource "google_logging_metric" "refresh_alert" {
  project     = var.project_id
  name        = local.names.metric_refresh_alert
  description = "${var.name_prefix} ALERT events: ${join(", ", local.alert_events)}."
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

  label_extractors = {
    by = "EXTRACT(jsonPayload.by)"
  }

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "by"
      value_type  = "STRING"
      description = "holder id of the refresher (function or agent host)"
    }
  }

  depends_on = [google_project_service.api]
}

# A new log-based metric can take minutes to become visible to Monitoring; an alert policy created
# right after it fails with "Cannot find metric(s) that match type" (hashicorp/terraform-provider-google#11102).
resource "time_sleep" "metrics_visible" {
  create_duration = "180s"
  depends_on      = [google_logging_metric.refresh_alert, google_logging_metric.token_refreshed]
}

resource "google_monitoring_alert_policy" "refresh_alert" {
  project               = var.project_id
  display_name          = "${local.names.alert_policy_prefix} refresh ALERT"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "ALERT event logged"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.refresh_alert.name}\" AND resource.type=one_of(\"cloud_run_revision\",\"gce_instance\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "60s"
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
    content   = "token-keeper (${var.name_prefix}, ${var.saxo_environment}) could not refresh the Saxo token or store it. See docs/OPERATIONS.md, section Troubleshooting; start with `npx token-keeper doctor`. If the log says login required, run `token-keeper login`."
  }

  depends_on = [time_sleep.metrics_visible]
}

resource "google_monitoring_alert_policy" "refresh_absent" {
  project               = var.project_id
  display_name          = "${local.names.alert_policy_prefix} no refresh for ${var.refresh_absent_minutes} min"
  combiner              = "OR"
  notification_channels = var.notification_channels

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
    content   = "Neither the function nor the VM agent of ${var.name_prefix} (${var.saxo_environment}) logged a token refresh. The Saxo refresh token lives about 60 minutes: act now (docs/OPERATIONS.md)."
  }

  depends_on = [time_sleep.metrics_visible]
}
