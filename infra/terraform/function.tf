# Source: `npm run package:function` writes build/function (compiled core + functions, a package.json
# without native dependencies and the package-lock.json of exactly the tested versions); Terraform
# zips and uploads it. The zip is per instance (name_prefix) so two chains never write one file.
data "archive_file" "function" {
  type        = "zip"
  source_dir  = "${path.module}/${var.function_source_dir}"
  output_path = "${path.root}/.terraform/tmp/${local.names.function_source_zip}"
  excludes    = ["node_modules"]
}

resource "google_storage_bucket" "source" {
  project                     = var.project_id
  name                        = local.names.source_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.api]
}

# The object name carries the content hash, so a code change redeploys the function.
resource "google_storage_bucket_object" "function" {
  name   = "function-${data.archive_file.function.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.function.output_path
}

resource "google_cloudfunctions2_function" "refresh" {
  project     = var.project_id
  name        = local.names.function
  location    = var.region
  description = "Refreshes the Saxo OAuth token when it is within the cloud threshold (${var.name_prefix})."

  build_config {
    runtime         = "nodejs24"
    entry_point     = "refreshToken"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.function.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.function.email
    ingress_settings      = var.function_ingress
    # The lease serialises refreshers anyway; one instance keeps it simple and cheap.
    min_instance_count               = 0
    max_instance_count               = 1
    max_instance_request_concurrency = 1
    available_memory                 = "256M"
    timeout_seconds                  = 120
    all_traffic_on_latest_revision   = true
    # Names, tiers and the scheduler's period (CLOUD_SCHEDULE_SECONDS), from modules/settings.
    environment_variables = module.settings.function_env

    dynamic "secret_environment_variables" {
      for_each = var.use_app_secret ? [1] : []
      content {
        key        = "SAXO_APP_SECRET"
        project_id = var.project_id
        secret     = google_secret_manager_secret.app_secret[0].secret_id
        version    = "latest"
      }
    }
  }

  depends_on = [time_sleep.iam_propagation]
}
