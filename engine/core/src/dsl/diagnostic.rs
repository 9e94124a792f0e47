//! Diagnostics: a stable code, a message, an optional hint and a 1-based
//! position, rendered as `FILE:LINE:COL: error[IMX0012]: message`.

use std::fmt;

/// How bad a diagnostic is. Any `Error` means no workflow is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem found in a workflow source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub hint: Option<String>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column (characters).
    pub column: u32,
}

impl Diagnostic {
    /// `FILE:LINE:COL: error[IMX0012]: message`, plus `  hint: ...` on a second line.
    pub fn render(&self, file: &str) -> String {
        let mut text = format!(
            "{file}:{}:{}: {}[{}]: {}",
            self.line,
            self.column,
            self.severity.as_str(),
            self.code.as_str(),
            self.message
        );
        if let Some(hint) = &self.hint {
            text.push_str("\n  hint: ");
            text.push_str(hint);
        }
        text
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render("<source>"))
    }
}

macro_rules! codes {
    ($($variant:ident = $number:literal, $text:literal, $summary:literal;)*) => {
        /// Stable diagnostic codes. Never renumber; retire a code instead.
        /// Each has a section in `docs/errors.md`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum Code {
            $($variant = $number,)*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// `"IMX0001"` and so on.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)*
                }
            }

            /// One line saying what the code means.
            pub fn summary(self) -> &'static str {
                match self {
                    $(Code::$variant => $summary,)*
                }
            }
        }
    };
}

codes! {
    YamlSyntax = 1, "IMX0001", "the source is not well-formed YAML";
    YamlLimit = 2, "IMX0002", "the source exceeds a size, depth, alias or document limit";
    DuplicateKey = 3, "IMX0003", "a mapping key appears twice";
    DuplicateStepId = 4, "IMX0004", "two steps have the same id";
    UnknownKey = 5, "IMX0005", "a key that this place does not accept";
    MissingKey = 6, "IMX0006", "a required key is missing";
    WrongType = 7, "IMX0007", "a value has the wrong type";
    InvalidName = 8, "IMX0008", "the workflow name does not match `[a-z0-9][a-z0-9_.-]*`";
    InvalidStepId = 9, "IMX0009", "a step id does not match `[a-z][a-z0-9_]*`";
    UnknownStepKind = 10, "IMX0010", "`uses` names no known step kind";
    InvalidWith = 11, "IMX0011", "`with` does not fit the step kind";
    UnknownNeed = 12, "IMX0012", "`needs` names a step that does not exist";
    Cycle = 13, "IMX0013", "`needs` forms a cycle";
    InvalidTriggerRule = 14, "IMX0014", "`trigger_rule` is not a known rule";
    InvalidDuration = 15, "IMX0015", "a duration cannot be read or is out of range";
    InvalidRetry = 16, "IMX0016", "a retry policy value is out of range";
    InvalidCron = 17, "IMX0017", "a cron schedule cannot be read";
    UnknownTimezone = 18, "IMX0018", "a timezone is not an IANA timezone name";
    InvalidInputSchema = 19, "IMX0019", "`input` is not a valid JSON Schema 2020-12";
    TemplateSyntax = 20, "IMX0020", "a `{{ }}` template does not compile";
    ExpressionSyntax = 21, "IMX0021", "an `if` expression does not compile";
    UnknownScopeRoot = 22, "IMX0022", "a template reads a variable that is not in scope";
    UnknownStepReference = 23, "IMX0023", "a template reads a step that does not exist";
    StepNotUpstream = 24, "IMX0024", "a template reads a step that is not guaranteed to finish first";
    ItemOutsideForEach = 25, "IMX0025", "`item` or `index` used outside a `for_each` step";
    UnknownRunField = 26, "IMX0026", "a template reads an unknown field of `run`";
    UnknownStepField = 27, "IMX0027", "a template reads a step field other than `output`, `status` or `error`";
    InvalidTrigger = 28, "IMX0028", "a trigger is malformed";
    InvalidForEach = 29, "IMX0029", "`for_each` or `max_parallel` is malformed";
    LimitExceeded = 30, "IMX0030", "a workflow exceeds a size limit (steps, needs, triggers, lengths)";
    DuplicateNeed = 31, "IMX0031", "`needs` lists the same step twice (warning)";
    TriggerInputInvalid = 32, "IMX0032", "a cron trigger's `input` does not satisfy the workflow's `input` schema";
    // Problems of a set of files, found by `imx validate` rather than `parse`.
    Unreadable = 33, "IMX0033", "a workflow file cannot be read (missing, too large, not UTF-8)";
    DuplicateWorkflowName = 34, "IMX0034", "two workflow files use the same `name`";
    // Reported by `parse`.
    TemplateNotAllowed = 35, "IMX0035", "a template where the value must be known when the workflow is registered";
    // Problems across workflows, found by `imx validate` (`check_calls`).
    UnknownWorkflow = 36, "IMX0036", "a `uses: workflow` step names a workflow that is not among those checked";
    ChildInputInvalid = 37, "IMX0037", "a `uses: workflow` step's `input` does not fit the child's `input` schema";
    // Reported by `parse` again.
    InvalidVar = 38, "IMX0038", "a `vars` name is not `[a-z][a-z0-9_]*`";
    FinallyNeed = 39, "IMX0039", "`needs` links a step under `steps:` and one under `finally:`";
    InvalidMatrix = 40, "IMX0040", "a `matrix` is malformed (axes, `include`, `exclude`)";
}

impl Code {
    /// Whether [`super::parse`] reports this code; the others concern a set of
    /// files and are reported by `imx validate`.
    pub fn is_reported_by_parse(self) -> bool {
        !matches!(
            self,
            Code::Unreadable
                | Code::DuplicateWorkflowName
                | Code::UnknownWorkflow
                | Code::ChildInputInvalid
        )
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
