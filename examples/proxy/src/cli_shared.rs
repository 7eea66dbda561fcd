//! What both binaries' command lines share (`electrum-gateway` includes
//! this file): parsing with clap into "run this", "print this" (`--help`,
//! `--version`) or a one-line error.

/// The parsed command line, or text for stdout (help, version).
pub enum Parsed<C> {
    /// The arguments.
    Args(C),
    /// `--help` / `--version`: print this and exit 0.
    Print(String),
}

/// Parses `args` (without the program name) as `program` would; errors
/// are one line, without the program name.
pub fn parse<C: clap::Parser>(
    program: &str,
    args: impl IntoIterator<Item = String>,
) -> Result<Parsed<C>, String> {
    use clap::error::ErrorKind;
    match C::try_parse_from(std::iter::once(program.to_owned()).chain(args)) {
        Ok(c) => Ok(Parsed::Args(c)),
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                Ok(Parsed::Print(e.render().to_string()))
            }
            _ => Err(one_line(&e)),
        },
    }
}

/// clap's message without its `error: ` prefix, usage and tips, on one line.
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    // The message is the first paragraph; usage and tips follow a blank line.
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    format!("{message} (see --help)")
}
