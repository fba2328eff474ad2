//! `strata save`: write images as an archive that `docker load`, skopeo and umoci accept.
