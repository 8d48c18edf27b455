output "function_uri" {
  description = "HTTPS endpoint of the refresh function (invokable by the scheduler account only)."
  value       = google_cloudfunctions2_function.refresh.service_config[0].uri
}

output "scheduler_job" {
  description = "Cloud Scheduler job name (for `gcloud scheduler jobs run`)."
  value       = google_cloud_scheduler_job.refresh.name
}

output "token_secret_id" {
  value = google_secret_manager_secret.token.secret_id
}

output "topic_id" {
  value = google_pubsub_topic.token_rotated.name
}

output "vm_service_accounts" {
  description = "Service account each VM must run as (gcloud compute instances set-service-account)."
  value       = local.vm_sa_email
}

output "agent_env" {
  description = "Per VM: the GCP lines of the agent's env file (/etc/token-keeper/token-keeper.env)."
  value = {
    for v in var.vm_names : v => join("\n", [
      "GOOGLE_CLOUD_PROJECT=${var.project_id}",
      "TOKEN_SECRET_ID=${google_secret_manager_secret.token.secret_id}",
      "TOKEN_TOPIC_ID=${google_pubsub_topic.token_rotated.name}",
      "TOKEN_SUBSCRIPTION_ID=${google_pubsub_subscription.vm[v].name}",
      "SAXO_ENVIRONMENT=${var.saxo_environment}",
      "CLOUD_REFRESH_THRESHOLD_SECONDS=${var.cloud_refresh_threshold_seconds}",
      "KEEP_SECRET_VERSIONS=${var.keep_secret_versions}",
      "",
    ])
  }
}
