output "function_uri" {
  description = "HTTPS endpoint of the refresh function (invokable by the scheduler account only)."
  value       = google_cloudfunctions2_function.refresh.service_config[0].uri
}

output "function_name" {
  description = "Function name (gcloud functions logs read <name> --gen2 --region=<region>)."
  value       = google_cloudfunctions2_function.refresh.name
}

output "scheduler_job" {
  description = "Cloud Scheduler job name (for `gcloud scheduler jobs run`)."
  value       = google_cloud_scheduler_job.refresh.name
}

output "schedule" {
  description = "The scheduler's cron and the same period in seconds (the function's CLOUD_SCHEDULE_SECONDS)."
  value       = module.settings.schedule
}

output "token_secret_id" {
  value = google_secret_manager_secret.token.secret_id
}

output "app_secret_id" {
  description = "The app secret's id when use_app_secret = true (add its value with gcloud secrets versions add)."
  value       = var.use_app_secret ? google_secret_manager_secret.app_secret[0].secret_id : null
}

output "topic_id" {
  value = google_pubsub_topic.token_rotated.name
}

output "vm_service_accounts" {
  description = "Service account each VM must run as (gcloud compute instances set-service-account)."
  value       = local.vm_sa_email
}

output "agent_env" {
  description = "Per VM: the GCP and tier lines of the agent's env file (/etc/token-keeper/token-keeper.env, or /etc/token-keeper/<chain>.env for token-keeper@<chain>.service), plain KEY=value lines. As a file: terraform output -json agent_env | python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin)[sys.argv[1]])' VM > agent.env (docs/OPERATIONS.md). The first VM of vm_names is the primary."
  value       = module.settings.agent_env
}

output "notification_channels" {
  description = "Every notification channel this chain's alert policies use (created here and passed in). An SMS channel sends nothing until verified."
  value       = local.notification_channels
}

output "alert_policies" {
  description = "This chain's alert policies by purpose."
  value = {
    login_required        = google_monitoring_alert_policy.login_required.name
    relogin_link          = google_monitoring_alert_policy.relogin_link.name
    chain_deadline        = google_monitoring_alert_policy.chain_deadline.name
    refresh_alert         = google_monitoring_alert_policy.refresh_alert.name
    agent_not_checking_in = google_monitoring_alert_policy.agent_not_checking_in.name
    refresh_absent        = google_monitoring_alert_policy.refresh_absent.name
  }
}
