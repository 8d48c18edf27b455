# Inputs of the token-keeper module. Validations (including the cross-checks: tiers ordered
# cloud > agent > bots, a scheduler tick inside the cloud's window) live in modules/settings, which
# derives every name and setting from these; this file holds the descriptions and defaults.

variable "project_id" {
  description = "GCP project that hosts the secret, topic, function and scheduler."
  type        = string
}

variable "region" {
  description = "Region for the function and the scheduler job (keep it near the VM)."
  type        = string
  default     = "us-east1"
}

variable "name_prefix" {
  description = "Prefix of every project-unique name (service accounts, custom role, function, topic, secret, metrics). One per chain: two instances of this module in a project need two prefixes."
  type        = string
  default     = "token-keeper"
}

variable "token_secret_id" {
  description = "Secret Manager secret holding the bots' flat JSON token payload. Null: <name_prefix>-saxo-token. If the bots already use a secret, set its id and import it (docs/OPERATIONS.md) instead of creating a second."
  type        = string
  default     = null
}

variable "topic_id" {
  description = "Pub/Sub topic for TOKEN_ROTATED events. Null: <name_prefix>-rotated. Each VM's subscription is <topic_id>-<vm>."
  type        = string
  default     = null
}

variable "use_app_secret" {
  description = "Keep the Saxo app secret in its own secret (<name_prefix>-saxo-app-secret), injected into the function as SAXO_APP_SECRET. Its value must be added before the full apply (docs/OPERATIONS.md, first deployment). False: the app key/secret are read from the token payload, as the bots do."
  type        = bool
  default     = false
}

variable "saxo_app_key" {
  description = "Optional Saxo app key (not secret) for the function. Empty: read from the token payload."
  type        = string
  default     = ""
}

variable "saxo_environment" {
  description = "SIM or LIVE."
  type        = string
  default     = "SIM"
}

variable "vm_names" {
  description = "VMs that run this chain's agent: one Pub/Sub subscription and (unless listed in existing_vm_service_accounts) one service account each. The first is the primary (TOKEN_KEEPER_PRIMARY=true in agent_env)."
  type        = list(string)
  default     = ["calypso-bot"]
}

variable "existing_vm_service_accounts" {
  description = "Map vm name -> email of a service account the VM already runs as (a VM has exactly one). Those VMs get their bindings on that account instead of a new one. A second chain on the same VM passes the first chain's account here."
  type        = map(string)
  default     = {}
}

variable "grant_vm_ops_agent_roles" {
  description = "Grant roles/logging.logWriter and roles/monitoring.metricWriter on the project to each VM's account (the Ops Agent ships the agent's logs with them). When several instances of this module share a VM account, set true in exactly one: project IAM members are per project, and two instances owning the same member would revoke it for both when one is destroyed."
  type        = bool
  default     = true
}

variable "agent_systemd_unit" {
  description = "The agent's systemd unit on the VMs (token-keeper.service, or token-keeper@<chain>.service for a chain run by the template unit). The log-based metrics count the VM's events of this unit only, so two chains never alert for each other."
  type        = string
  default     = "token-keeper.service"
}

variable "schedule_every_minutes" {
  description = "Cloud Scheduler period in minutes (must divide 60). Both the cron (*/N * * * *) and the function's CLOUD_SCHEDULE_SECONDS derive from it."
  type        = number
  default     = 5
}

variable "cloud_refresh_threshold_seconds" {
  description = "The function refreshes when the access token has at most this many seconds left (tier 1)."
  type        = number
  default     = 600
}

variable "refresh_threshold_seconds" {
  description = "The VM agent refreshes when this little remains (tier 2); the function defers to the agent inside this window."
  type        = number
  default     = 300
}

variable "bot_refresh_threshold_seconds" {
  description = "The bots' own buffer (tier 3, fixed in their code at 120 s): tell both sides what the bots do."
  type        = number
  default     = 120
}

variable "keep_secret_versions" {
  description = "Secret versions kept (not destroyed); every other one is billed, so keep this small."
  type        = number
  default     = 3
}

variable "max_refresh_failures" {
  description = "Consecutive failures before the refresh_alert ALERT event."
  type        = number
  default     = 5
}

variable "function_ingress" {
  description = "Ingress for the function. Invocation is always restricted by IAM to the scheduler's account."
  type        = string
  default     = "ALLOW_ALL"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.function_ingress)
    error_message = "function_ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "function_source_dir" {
  description = "Directory produced by `npm run package:function` (relative to this module)."
  type        = string
  default     = "../../build/function"
}

variable "notification_channels" {
  description = "Existing Monitoring notification channel ids (projects/P/notificationChannels/N), used by every alert policy besides the channels created from alert_emails and alert_channels."
  type        = list(string)
  default     = []
}

variable "alert_emails" {
  description = "E-mail addresses that receive every alert of this chain: one notification channel each (notifications.tf). E-mail carries the alert's documentation text (environment, deadline, action, re-login link)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.alert_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", e))])
    error_message = "alert_emails: e-mail addresses."
  }
}

variable "alert_channels" {
  description = <<-EOT
    Other notification channels of this chain, one object each: type = "sms" (address: +E.164 phone
    number; stays unverified - and silent - until a person verifies it in the console), "slack"
    (address: #channel; token: the Slack app's OAuth token), "webhook_tokenauth" (address: the HTTPS
    URL) or "pagerduty" (token: the integration's service key; address unused). The token is looked
    up in alert_channel_tokens by the channel's name. docs/OPERATIONS.md "Alerts" says what each type carries.
  EOT
  type = list(object({
    name    = string
    type    = string
    address = optional(string, "")
  }))
  default = []

  validation {
    condition     = alltrue([for c in var.alert_channels : contains(["sms", "slack", "webhook_tokenauth", "pagerduty"], c.type)])
    error_message = "alert_channels: type must be sms, slack, webhook_tokenauth or pagerduty (e-mail: alert_emails)."
  }
  validation {
    condition     = length(distinct([for c in var.alert_channels : c.name])) == length(var.alert_channels) && alltrue([for c in var.alert_channels : can(regex("^[a-z0-9-]{1,30}$", c.name))])
    error_message = "alert_channels: each name unique, 1-30 lowercase letters, digits or dashes."
  }
  validation {
    condition     = alltrue([for c in var.alert_channels : c.type == "pagerduty" || c.address != ""])
    error_message = "alert_channels: sms, slack and webhook_tokenauth need an address."
  }
}

variable "alert_channel_tokens" {
  description = "Secrets of alert_channels by channel name: the Slack OAuth token or the PagerDuty service key (kept out of plans and outputs)."
  type        = map(string)
  default     = {}
  sensitive   = true
}

variable "agent_checkin_absent_minutes" {
  description = "Page when a VM's agent has not checked in (agent_checkin, every 2 min) for this long. With the metric's ingestion delay the page arrives within about 10 minutes of the agent stopping."
  type        = number
  default     = 5

  validation {
    condition     = var.agent_checkin_absent_minutes >= 3 && var.agent_checkin_absent_minutes <= 8
    error_message = "agent_checkin_absent_minutes: 3-8 (more than one check-in interval, and a page within 10 minutes)."
  }
}

variable "agent_crash_loop_starts" {
  description = "Page when a VM's agent starts more than this many times in 10 minutes (crash loop)."
  type        = number
  default     = 3
}

variable "refresh_absent_minutes" {
  description = "Alert when no token_refreshed event was logged for this long (both paths dead)."
  type        = number
  default     = 30
}

variable "relogin_base_url" {
  description = "Phone re-login: the relogin service's origin, https://<name_prefix>-relogin-<project number>.<region>.run.app (or a custom domain). null: not deployed. See docs/OPERATIONS.md \"When the chain dies\"."
  type        = string
  default     = null
}

variable "relogin_image" {
  description = "Phone re-login: the container image of the relogin service (built from this repository, infra/relogin/Dockerfile). Deployed when this and relogin_base_url are set."
  type        = string
  default     = null
}
