# Two independent token chains in one project - a Saxo SIM app and a LIVE app (or two accounts) -
# whose agents run side by side on one VM as token-keeper@sim.service and token-keeper@live.service
# (infra/systemd/token-keeper@.service). Walkthrough: docs/OPERATIONS.md, "A second chain".
#
#   cd infra/terraform/examples/two-chains
#   terraform init
#   terraform apply -var project_id=my-project

terraform {
  required_version = ">= 1.5"
}

variable "project_id" {
  description = "GCP project for both chains."
  type        = string
}

variable "region" {
  type    = string
  default = "us-east1"
}

variable "vm_name" {
  description = "The VM that runs both agents."
  type        = string
  default     = "calypso-bot"
}

variable "notification_channels" {
  description = "Existing channel ids both chains notify (besides their own e-mail channels)."
  type        = list(string)
  default     = []
}

variable "alert_emails" {
  description = "Per chain: who is paged. Each chain creates its own channels (display names carry its prefix and environment)."
  type        = object({ sim = list(string), live = list(string) })
  default     = { sim = [], live = [] }
}

module "sim" {
  source = "../.."

  project_id            = var.project_id
  region                = var.region
  name_prefix           = "tk-sim"
  saxo_environment      = "SIM"
  vm_names              = [var.vm_name]
  agent_systemd_unit    = "token-keeper@sim.service"
  notification_channels = var.notification_channels
  alert_emails          = var.alert_emails.sim
}

module "live" {
  source = "../.."

  project_id         = var.project_id
  region             = var.region
  name_prefix        = "tk-live"
  saxo_environment   = "LIVE"
  vm_names           = [var.vm_name]
  agent_systemd_unit = "token-keeper@live.service"
  # A VM runs as exactly one service account: the live chain binds its roles on the one the sim
  # chain created, and leaves the project-level Ops Agent roles to the sim instance.
  existing_vm_service_accounts = { (var.vm_name) = module.sim.vm_service_accounts[var.vm_name] }
  grant_vm_ops_agent_roles     = false
  notification_channels        = var.notification_channels
  alert_emails                 = var.alert_emails.live
}

output "vm_service_account" {
  description = "The account the VM runs as (both chains are bound on it)."
  value       = module.sim.vm_service_accounts[var.vm_name]
}

output "agent_env" {
  description = "Per chain: the lines for /etc/token-keeper/<chain>.env on the VM."
  value = {
    sim  = module.sim.agent_env[var.vm_name]
    live = module.live.agent_env[var.vm_name]
  }
}

output "scheduler_jobs" {
  value = { sim = module.sim.scheduler_job, live = module.live.scheduler_job }
}
