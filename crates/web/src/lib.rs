//! The datakit-ci web UI: pages, live logs, authentication, ACLs and metrics
