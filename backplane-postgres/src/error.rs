//! How PostgreSQL client errors become [`BackplaneError`]s.

use backplane_api::BackplaneError;

/// Wraps a client error, marking it transient when retrying later may
/// succeed: the connection failed or was closed, or the server refused
/// for a passing reason (shutting down, out of connections).
pub(crate) fn wrap(context: &str, error: tokio_postgres::Error) -> BackplaneError {
    if is_connection_error(&error) {
        BackplaneError::transient(context, error)
    } else {
        BackplaneError::transport(context, error)
    }
}

/// Whether `error` means the connection is unusable (or the server
/// turned it away for a passing reason), rather than that one statement
/// failed.
pub(crate) fn is_connection_error(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    let Some(db) = error.as_db_error() else {
        // I/O errors, timeouts, protocol errors: all about the connection.
        return true;
    };

    // SQLSTATE classes: 08 connection exception, 53 insufficient
    // resources (too many connections), 57 operator intervention
    // (terminated backend, shutdown, server starting up).
    let code = db.code().code();
    ["08", "53", "57"]
        .iter()
        .any(|class| code.starts_with(class))
}

/// An error for a deadline the server missed.
pub(crate) fn timed_out(context: &str) -> BackplaneError {
    BackplaneError::transient(context, "the server did not answer in time")
}
