resource "google_cloud_scheduler_job" "refresh" {
  project     = var.project_id
  region      = var.region
  name        = local.names.scheduler_job
  description = "Invokes the ${var.name_prefix} function (cloud refresh path)."
  # Same source as the function's CLOUD_SCHEDULE_SECONDS (modules/settings): they cannot disagree.
  schedule         = module.settings.schedule.cron
  time_zone        = "Etc/UTC"
  attempt_deadline = "120s"

  # A missed tick is covered by the next one and by the VM agent; retry a little, quickly.
  retry_config {
    retry_count          = 2
    min_backoff_duration = "10s"
    max_backoff_duration = "60s"
    max_doublings        = 2
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.refresh.service_config[0].uri
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode("{\"source\":\"scheduler\"}")

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.refresh.service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.scheduler_invoker]
}
