//! Plain words for TLS failures when connecting: the TLS library names a certificate
//! problem by a code (`UnknownIssuer`), the server names a refused unencrypted connection
//! in its own terms; operators need to know which setting to change.

/// The database's words, followed by what they mean and what to change when they are
/// about TLS.
pub fn explained(cause: String) -> String {
    match hint(&cause) {
        Some(h) => format!("{cause} — {h}"),
        None => cause,
    }
}

fn hint(cause: &str) -> Option<&'static str> {
    const HINTS: &[(&str, &str)] = &[
        (
            "UnknownIssuer",
            "the server's TLS certificate is not signed by the CA this agent was given: \
             sslrootcert (PostgreSQL) or ssl-ca (MySQL) must name the CA certificate that \
             signed the server's certificate",
        ),
        (
            "NotValidForName",
            "the server's TLS certificate does not name the host in the URL: connect by a \
             name or address the certificate lists",
        ),
        (
            "Expired",
            "the server's TLS certificate has expired: the database's administrator must renew it",
        ),
        (
            "NotValidYet",
            "the server's TLS certificate is not valid yet: check this machine's clock",
        ),
        (
            "no encryption",
            "the server accepts only encrypted connections: set sslmode=verify-full with \
             sslrootcert=<the CA's certificate> in the URL",
        ),
        (
            "insecure transport are prohibited",
            "the server accepts only encrypted connections: set ssl-mode=VERIFY_IDENTITY with \
             ssl-ca=<the CA's certificate> in the URL",
        ),
    ];
    HINTS
        .iter()
        .find(|(words, _)| cause.contains(words))
        .map(|(_, hint)| *hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_codes_and_refusals_are_explained() {
        let e = explained("invalid peer certificate: UnknownIssuer".into());
        assert!(
            e.contains("not signed by the CA") && e.contains("sslrootcert"),
            "{e}"
        );
        let e = explained(
            "no pg_hba.conf entry for host \"1.2.3.4\", user \"u\", database \"d\", no encryption"
                .into(),
        );
        assert!(e.contains("only encrypted connections"), "{e}");
        assert_eq!(explained("connection refused".into()), "connection refused");
    }
}
