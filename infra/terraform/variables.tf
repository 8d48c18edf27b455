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
  description = "Prefix for every resource name (service accounts, topic, function, metric)."
  type        = string
  default     = "token-keeper"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,17}$", var.name_prefix))
    error_message = "name_prefix: 3-18 chars, lowercase letters, digits and dashes, starting with a letter."
  }
}

variable "token_secret_id" {
  description = "Secret Manager secret holding the bots' flat JSON token payload. If the bots already use one, import it (see docs/OPERATIONS.md) instead of creating a second."
  type        = string
  default     = "saxo-token"
}

variable "app_secret_secret_id" {
  description = "Optional separate secret holding only the Saxo app secret; injected into the function as SAXO_APP_SECRET. Empty: the app key/secret are read from the token payload, as the bots do today."
  type        = string
  default     = ""
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

  validation {
    condition     = contains(["SIM", "LIVE"], var.saxo_environment)
    error_message = "saxo_environment must be SIM or LIVE."
  }
}

variable "topic_id" {
  description = "Pub/Sub topic for TOKEN_ROTATED events."
  type        = string
  default     = "token-rotated"
}

variable "vm_names" {
  description = "One Pub/Sub subscription and one service account per VM that runs the agent."
  type        = list(string)
  default     = ["calypso-bot"]

  validation {
    condition     = alltrue([for v in var.vm_names : can(regex("^[a-z][a-z0-9-]{0,19}$", v))])
    error_message = "vm_names: lowercase letters, digits and dashes, at most 20 chars each."
  }
}

variable "existing_vm_service_accounts" {
  description = "Map vm name -> email of a service account the VM already runs as. Those VMs get their bindings on that account instead of a new one (changing a VM's account requires stopping it)."
  type        = map(string)
  default     = {}
}

variable "schedule" {
  description = "Cloud Scheduler cron for the cloud refresh path."
  type        = string
  default     = "*/5 * * * *"
}

variable "cloud_refresh_threshold_seconds" {
  description = "The function refreshes when the access token has at most this many seconds left."
  type        = number
  default     = 600
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
  description = "Monitoring notification channel ids (projects/P/notificationChannels/N) for the alert policies."
  type        = list(string)
  default     = []
}

variable "refresh_absent_minutes" {
  description = "Alert when no token_refreshed event was logged for this long (both paths dead)."
  type        = number
  default     = 30
}
