//! MPAS (Keycloak Admin REST API) simulator: token and events endpoints, realistic traffic, faults and a ledger.
