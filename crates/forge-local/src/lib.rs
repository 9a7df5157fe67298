//! Local Git repositories as a forge for datakit-ci: mirrors their refs into the metadata branch
