//! The authorize stage: whether this user may use this site.
//!
//! Every user the edge signed in may use every site that offers them a scheme
//! today; access rules by user and AD group (issue 13) go here, between
//! authentication and the preparation of the backend request, so that a
//! refused user never reaches a backend, not even for a protocol switch.

use super::failure::Failure;
use crate::auth::User;
use crate::config::Site;

pub fn authorize(_site: &Site, _user: Option<&User>) -> Result<(), Failure> {
    Ok(())
}
