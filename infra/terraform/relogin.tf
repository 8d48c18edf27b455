# Phone re-login (docs/DESIGN.md "Re-login from a phone"): the only public endpoint. A Cloud Run v2
# service with the invoker IAM check disabled (Google's recommendation over granting allUsers, which
# domain-restricted sharing forbids); the app does every check itself. The refresher function stays
# IAM-protected. Deployed when var.relogin_image and var.relogin_base_url are set.
locals {
  relogin = var.relogin_image != null && var.relogin_base_url != null ? 1 : 0
}

resource "google_service_account" "relogin" {
  count        = local.relogin
  project      = var.project_id
  account_id   = local.names.relogin_account_id
  display_name = "${var.name_prefix}: phone re-login service"
  depends_on   = [google_project_service.api]
}

# The link-state secret: its annotations hold the links' and sign-ins' hashes (compare-and-set on the
# etag); its payload a random key from which PKCE verifiers are derived. Never written by Terraform.
resource "google_secret_manager_secret" "relogin_links" {
  count     = var.relogin_base_url != null ? 1 : 0
  project   = var.project_id
  secret_id = local.names.relogin_link_secret_id

  labels = {
    app = var.name_prefix
  }

  replication {
    auto {}
  }

  lifecycle {
    ignore_changes = [annotations]
  }

  depends_on = [google_project_service.api]
}

# On the token secret: read the pin and the latest pair, add the new pair. No update (the lease and
# the pin are not its to change), no destroy (the next refresh prunes).
resource "google_project_iam_custom_role" "relogin_token" {
  count       = local.relogin
  project     = var.project_id
  role_id     = local.names.relogin_token_role_id
  title       = "${var.name_prefix} relogin: token secret"
  description = "Read the token secret (pin, latest pair) and add a version."
  permissions = [
    "secretmanager.secrets.get",
    "secretmanager.versions.access",
    "secretmanager.versions.add",
  ]
  depends_on = [google_project_service.api]
}

# On the link-state secret: compare-and-set its annotations, read and create its key.
resource "google_project_iam_custom_role" "relogin_links" {
  count       = var.relogin_base_url != null ? 1 : 0
  project     = var.project_id
  role_id     = local.names.relogin_links_role_id
  title       = "${var.name_prefix} relogin: link state"
  description = "Compare-and-set the link-state secret's annotations; read and add its key."
  permissions = [
    "secretmanager.secrets.get",
    "secretmanager.secrets.update",
    "secretmanager.versions.access",
    "secretmanager.versions.add",
  ]
  depends_on = [google_project_service.api]
}

resource "google_secret_manager_secret_iam_member" "relogin_token" {
  count     = local.relogin
  project   = var.project_id
  secret_id = google_secret_manager_secret.token.secret_id
  role      = google_project_iam_custom_role.relogin_token[0].id
  member    = "serviceAccount:${google_service_account.relogin[0].email}"
}

# The relogin service and the function (which issues a link when the chain needs a login).
resource "google_secret_manager_secret_iam_member" "relogin_links" {
  for_each = var.relogin_base_url == null ? {} : merge(
    { function = "serviceAccount:${google_service_account.function.email}" },
    local.relogin == 1 ? { relogin = "serviceAccount:${google_service_account.relogin[0].email}" } : {},
  )
  project   = var.project_id
  secret_id = google_secret_manager_secret.relogin_links[0].secret_id
  role      = google_project_iam_custom_role.relogin_links[0].id
  member    = each.value
}

resource "google_pubsub_topic_iam_member" "relogin_publisher" {
  count   = local.relogin
  project = var.project_id
  topic   = google_pubsub_topic.token_rotated.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.relogin[0].email}"
}

resource "google_cloud_run_v2_service" "relogin" {
  count                = local.relogin
  project              = var.project_id
  name                 = local.names.relogin_service
  location             = var.region
  ingress              = "INGRESS_TRAFFIC_ALL"
  invoker_iam_disabled = true
  deletion_protection  = false

  template {
    service_account                  = google_service_account.relogin[0].email
    max_instance_request_concurrency = 20
    scaling {
      min_instance_count = 0
      max_instance_count = 2
    }
    containers {
      image = var.relogin_image
      resources {
        limits = {
          cpu    = "1"
          memory = "256Mi"
        }
        cpu_idle = true
      }
      dynamic "env" {
        # The chain's settings (names, environment, app key) and RELOGIN_BASE_URL / RELOGIN_LINK_SECRET_ID.
        for_each = module.settings.function_env
        content {
          name  = env.key
          value = env.value
        }
      }
      dynamic "env" {
        for_each = var.use_app_secret ? [1] : []
        content {
          name = "SAXO_APP_SECRET"
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.app_secret[0].secret_id
              version = "latest"
            }
          }
        }
      }
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.relogin_token, google_secret_manager_secret_iam_member.relogin_links, google_secret_manager_secret_iam_member.relogin_app_secret, google_pubsub_topic_iam_member.relogin_publisher]
}

# The relogin service reads the app secret (a confidential app exchanges the code with it).
resource "google_secret_manager_secret_iam_member" "relogin_app_secret" {
  count     = var.use_app_secret ? local.relogin : 0
  project   = var.project_id
  secret_id = google_secret_manager_secret.app_secret[0].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.relogin[0].email}"
}

output "relogin_url" {
  description = "The phone re-login service (null when not deployed); it must equal var.relogin_base_url."
  value       = local.relogin == 1 ? google_cloud_run_v2_service.relogin[0].uri : null
}
