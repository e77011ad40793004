//! Prints the Rollout CustomResourceDefinition as YAML: `cargo run --example crdgen`.

use kube::CustomResourceExt;

fn main() -> std::process::ExitCode {
    match serde_saphyr::to_string(&canary_kube::crd::Rollout::crd()) {
        Ok(yaml) => {
            print!("{yaml}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot write the CRD as YAML: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
