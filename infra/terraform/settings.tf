# Names, schedule and environments, derived and validated in one provider-free place.
module "settings" {
  source = "./modules/settings"

  project_id                      = var.project_id
  region                          = var.region
  name_prefix                     = var.name_prefix
  token_secret_id                 = var.token_secret_id
  topic_id                        = var.topic_id
  use_app_secret                  = var.use_app_secret
  vm_names                        = var.vm_names
  schedule_every_minutes          = var.schedule_every_minutes
  cloud_refresh_threshold_seconds = var.cloud_refresh_threshold_seconds
  refresh_threshold_seconds       = var.refresh_threshold_seconds
  bot_refresh_threshold_seconds   = var.bot_refresh_threshold_seconds
  keep_secret_versions            = var.keep_secret_versions
  max_refresh_failures            = var.max_refresh_failures
  saxo_environment                = var.saxo_environment
  saxo_app_key                    = var.saxo_app_key
  agent_systemd_unit              = var.agent_systemd_unit
  relogin_base_url                = var.relogin_base_url
}

locals {
  names = module.settings.names
}
