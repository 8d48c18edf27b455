# Notification channels of this chain, created from variables (alert_emails, alert_channels), plus
# any existing channel ids (notification_channels). Every alert policy of monitoring.tf notifies
# local.notification_channels. Display names carry name_prefix and the environment, so two chains
# (examples/two-chains) have channels of their own, told apart in the console.
#
# What each type carries (docs/OPERATIONS.md "Alerts"): e-mail, Slack, webhook and PagerDuty carry
# the policy's documentation (environment, deadline, action, the re-login link); SMS carries a short
# summary only and stays unverified - sends nothing - until a person verifies the number
# (google_monitoring_notification_channel: "verification_status"). Resource reference:
# registry.terraform.io/providers/hashicorp/google/latest/docs/resources/monitoring_notification_channel

locals {
  alert_channel_labels = {
    sms               = "number"
    slack             = "channel_name"
    webhook_tokenauth = "url"
    pagerduty         = ""
  }
  alert_channel_secret_label = {
    slack     = "auth_token"
    pagerduty = "service_key"
  }
  alert_channels_by_name = { for c in var.alert_channels : c.name => c }

  notification_channels = concat(
    var.notification_channels,
    [for e in google_monitoring_notification_channel.email : e.id],
    [for c in google_monitoring_notification_channel.other : c.id],
  )
}

resource "google_monitoring_notification_channel" "email" {
  for_each = toset(var.alert_emails)

  project      = var.project_id
  display_name = "${var.name_prefix} (${var.saxo_environment}) e-mail ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_notification_channel" "other" {
  for_each = local.alert_channels_by_name

  project      = var.project_id
  display_name = "${var.name_prefix} (${var.saxo_environment}) ${each.value.type} ${each.key}"
  type         = each.value.type
  labels       = each.value.type == "pagerduty" ? {} : { (local.alert_channel_labels[each.value.type]) = each.value.address }

  dynamic "sensitive_labels" {
    for_each = contains(keys(local.alert_channel_secret_label), each.value.type) ? [1] : []
    content {
      auth_token  = each.value.type == "slack" ? lookup(var.alert_channel_tokens, each.key, null) : null
      service_key = each.value.type == "pagerduty" ? lookup(var.alert_channel_tokens, each.key, null) : null
    }
  }

  depends_on = [google_project_service.api]
}

# A chain with no channel would page nobody: say so at plan time (a warning, so tests and a first
# plan still run).
check "alerts_reach_someone" {
  assert {
    condition     = length(var.notification_channels) + length(var.alert_emails) + length(var.alert_channels) > 0
    error_message = "No notification channel: set alert_emails (or alert_channels / notification_channels), or no alert of ${var.name_prefix} reaches a person."
  }
}
