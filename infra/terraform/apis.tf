# APIs the deployment uses. serviceusage.googleapis.com is the one prerequisite Terraform cannot
# enable (enabling an API goes through it): on a brand-new project run
#   gcloud services enable serviceusage.googleapis.com --project=<project>
# once before the first apply (docs/OPERATIONS.md, first deployment).
locals {
  apis = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    # Project IAM members (the build and VM accounts' project roles) and the project number are read
    # and written through Cloud Resource Manager.
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "api" {
  for_each = local.apis
  project  = var.project_id
  service  = each.value

  # Other workloads (the bots, a second chain) use these APIs too: never switch them off on destroy.
  disable_on_destroy = false
}
