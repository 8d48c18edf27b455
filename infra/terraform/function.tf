# Source: `npm run package:function` writes build/function (compiled core + functions and a
# package.json without native dependencies); Terraform zips and uploads it.
data "archive_file" "function" {
  type        = "zip"
  source_dir  = "${path.module}/${var.function_source_dir}"
  output_path = "${path.module}/.terraform/function-source.zip"
}

resource "google_storage_bucket" "source" {
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name_prefix}-src"
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

locals {
  function_env = merge(
    {
      GOOGLE_CLOUD_PROJECT            = var.project_id
      TOKEN_SECRET_ID                 = google_secret_manager_secret.token.secret_id
      TOKEN_TOPIC_ID                  = google_pubsub_topic.token_rotated.name
      SAXO_ENVIRONMENT                = var.saxo_environment
      CLOUD_REFRESH_THRESHOLD_SECONDS = tostring(var.cloud_refresh_threshold_seconds)
      KEEP_SECRET_VERSIONS            = tostring(var.keep_secret_versions)
      MAX_REFRESH_FAILURES            = tostring(var.max_refresh_failures)
      TOKEN_KEEPER_HOLDER_ID          = "function:${var.name_prefix}"
      LOG_FORMAT                      = "json"
    },
    var.saxo_app_key == "" ? {} : { SAXO_APP_KEY = var.saxo_app_key },
  )
}

resource "google_cloudfunctions2_function" "refresh" {
  project     = var.project_id
  name        = "${var.name_prefix}-refresh"
  location    = var.region
  description = "Refreshes the Saxo OAuth token when it is within the cloud threshold (token-keeper)."

  build_config {
    runtime         = "nodejs22"
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
    environment_variables            = local.function_env

    dynamic "secret_environment_variables" {
      for_each = var.app_secret_secret_id == "" ? [] : [1]
      content {
        key        = "SAXO_APP_SECRET"
        project_id = var.project_id
        secret     = google_secret_manager_secret.app_secret[0].secret_id
        version    = "latest"
      }
    }
  }

  depends_on = [
    google_project_iam_member.build,
    google_secret_manager_secret_iam_member.app_secret_function,
  ]
}
