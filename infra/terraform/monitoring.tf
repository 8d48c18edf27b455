# Matches the ALERT event from the function (Cloud Run stdout) and from the agent (journald shipped by
# the Ops Agent with JSON parsing, see docs/OPERATIONS.md).
resource "google_logging_metric" "refresh_alert" {
  project     = var.project_id
  name        = "${var.name_prefix}-refresh-alert"
  description = "token-keeper ALERT events: refresh_alert (consecutive failures), refresh_token_expiring, secret_write_lost."
  filter      = "(severity=ALERT OR jsonPayload.severity=\"ALERT\") AND (jsonPayload.event=\"refresh_alert\" OR jsonPayload.event=\"refresh_token_expiring\" OR jsonPayload.event=\"secret_write_lost\")"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "event"
      value_type  = "STRING"
      description = "refresh_alert, refresh_token_expiring or secret_write_lost"
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
  name        = "${var.name_prefix}-token-refreshed"
  description = "token-keeper token_refreshed events (function or agent)."
  filter      = "jsonPayload.event=\"token_refreshed\""

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

resource "google_monitoring_alert_policy" "refresh_alert" {
  project               = var.project_id
  display_name          = "token-keeper: refresh ALERT"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "refresh_alert logged"
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
    content   = "token-keeper could not refresh the Saxo token. See docs/OPERATIONS.md, section Troubleshooting. If the log says login required, run `token-keeper login` on the VM."
  }
}

resource "google_monitoring_alert_policy" "refresh_absent" {
  project               = var.project_id
  display_name          = "token-keeper: no refresh for ${var.refresh_absent_minutes} min"
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
    content   = "Neither the function nor the VM agent logged a token refresh. The Saxo refresh token lives about 60 minutes: act now (docs/OPERATIONS.md)."
  }
}
