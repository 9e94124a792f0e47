//! Run input validation against the workflow's `input` JSON Schema, before
//! anything is written; every problem is reported with its JSON pointer.

use serde_json::Value;

use crate::core::workflow::Workflow;

use super::Error;

/// Most schema problems listed for one input.
pub const INPUT_PROBLEMS_MAX: usize = 50;

/// Each problem as `<pointer>: <message>` (`/` is the whole input); empty
/// when the input is valid or the workflow declares no schema.
pub fn input_problems(workflow: &Workflow, input: &Value) -> Result<Vec<String>, String> {
    let Some(schema) = &workflow.input else {
        return Ok(Vec::new());
    };
    let validator = jsonschema::validator_for(schema)
        .map_err(|error| format!("the workflow's `input` schema is invalid: {error}"))?;
    Ok(validator
        .iter_errors(input)
        .take(INPUT_PROBLEMS_MAX)
        .map(|error| {
            let pointer = error.instance_path().to_string();
            let pointer = if pointer.is_empty() {
                "/".to_owned()
            } else {
                pointer
            };
            format!("  {pointer}: {error}")
        })
        .collect())
}

/// The input a run of `workflow` starts with: `input` with the schema's
/// `default`s filled in (what `run.started` records), checked against it.
pub(super) fn prepare(workflow: &Workflow, input: Value) -> Result<Value, Error> {
    let input = crate::core::defaults::with_defaults(workflow.input.as_ref(), input);
    check(workflow, &input)?;
    Ok(input)
}

fn check(workflow: &Workflow, input: &Value) -> Result<(), Error> {
    let problems = input_problems(workflow, input).map_err(|problem| Error::InvalidInput {
        workflow: workflow.name.clone(),
        problems: vec![problem],
    })?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidInput {
            workflow: workflow.name.clone(),
            problems,
        })
    }
}
