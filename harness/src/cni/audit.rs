//! `netfault cni audit` (to come).
