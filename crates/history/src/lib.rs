//! Target history for datakit-ci: status branches and the commit index
