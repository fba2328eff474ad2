//! `strata rmi`, `image prune`
