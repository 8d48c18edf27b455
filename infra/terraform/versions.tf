terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4"
    }
    time = {
      source  = "hashicorp/time"
      version = ">= 0.9"
    }
  }
}

# No provider block: every resource names its project (and region) itself, so this directory works
# both as a root module (`terraform apply` here, credentials from `gcloud auth application-default
# login`) and as a child module instantiated once per chain (examples/two-chains). A module with its
# own provider block cannot be removed cleanly from a configuration that calls it.
