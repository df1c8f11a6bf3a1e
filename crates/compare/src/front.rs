//! cqrs-es + postgres-es behind the same gRPC front as ours: tonic servers of the
//! project's own `RegistrationService` and `ReportingService` whose RegisterModel and
//! SubmitReport execute the command through `CqrsFramework::execute` on PostgreSQL (the
//! other RPCs answer UNIMPLEMENTED). A system built on cqrs-es would need such a front
//! to serve other government systems, so this is the peer of "ours, over gRPC". It
//! checks no token (ours does), which favours the peer.

use std::sync::Arc;

use dvk_proto::registration::v1::{self as pr, registration_service_server::RegistrationService};
use dvk_proto::reporting::v1::{self as pp, reporting_service_server::ReportingService};
use postgres_es::PostgresCqrs;
use tonic::{Request, Response, Status, Streaming};

use crate::commands::{Model, Report, details, report_id, submission};

/// `impl $service for $front`: the methods given, and UNIMPLEMENTED for the RPCs the
/// comparison does not call (written out before `async_trait` sees the impl).
macro_rules! front {
    (impl $service:ident for $front:ident { $($method:item)* } not compared: $($name:ident($req:ty) -> $resp:ty;)*) => {
        #[tonic::async_trait]
        impl $service for $front {
            $($method)*
            $(
                async fn $name(&self, _: Request<$req>) -> Result<Response<$resp>, Status> {
                    Err(Status::unimplemented(concat!(stringify!($name), " is not part of the comparison")))
                }
            )*
        }
    };
}

fn failed(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// RegisterModel through cqrs-es.
pub struct ModelFront(pub Arc<PostgresCqrs<Model>>);

front! {
impl RegistrationService for ModelFront {
    async fn register_model(
        &self,
        request: Request<pr::RegisterModelRequest>,
    ) -> Result<Response<pr::WriteModelResponse>, Status> {
        let req = request.into_inner();
        let id = format!("model-{}", req.request_id);
        self.0.execute(&id, details(&req)).await.map_err(failed)?;
        Ok(Response::new(pr::WriteModelResponse { model_id: id, version: 1, position: None }))
    }

    async fn import_units(
        &self,
        _: Request<Streaming<pr::ImportUnitsRequest>>,
    ) -> Result<Response<pr::ImportUnitsResponse>, Status> {
        Err(Status::unimplemented("import_units is not part of the comparison"))
    }
}
not compared:
        reorganize_units(pr::ReorganizeUnitsRequest) -> pr::ReorganizeUnitsResponse;
        get_unit(pr::GetUnitRequest) -> pr::Unit;
        list_units(pr::ListUnitsRequest) -> pr::ListUnitsResponse;
        amend_model(pr::AmendModelRequest) -> pr::WriteModelResponse;
        start_model(pr::StartModelRequest) -> pr::WriteModelResponse;
        recognize_model(pr::RecognizeModelRequest) -> pr::WriteModelResponse;
        commend_model(pr::CommendModelRequest) -> pr::WriteModelResponse;
        replicate_model(pr::ReplicateModelRequest) -> pr::WriteModelResponse;
        retire_model(pr::RetireModelRequest) -> pr::WriteModelResponse;
        get_model(pr::GetModelRequest) -> pr::Model;
        list_models(pr::ListModelsRequest) -> pr::ListModelsResponse;
        get_model_history(pr::GetModelHistoryRequest) -> pr::GetModelHistoryResponse;
}

/// SubmitReport through cqrs-es.
pub struct ReportFront(pub Arc<PostgresCqrs<Report>>);

front! {
impl ReportingService for ReportFront {
    async fn submit_report(
        &self,
        request: Request<pp::SubmitReportRequest>,
    ) -> Result<Response<pp::WriteReportResponse>, Status> {
        let req = request.into_inner();
        let id = report_id(&req);
        self.0.execute(&id, submission(&req)).await.map_err(failed)?;
        Ok(Response::new(pp::WriteReportResponse { report_id: id, version: 1, revision: 1, position: None }))
    }
}
not compared:
        amend_report(pp::AmendReportRequest) -> pp::WriteReportResponse;
        return_report(pp::ReturnReportRequest) -> pp::WriteReportResponse;
        approve_report(pp::ApproveReportRequest) -> pp::WriteReportResponse;
        reopen_report(pp::ReopenReportRequest) -> pp::WriteReportResponse;
        get_report(pp::GetReportRequest) -> pp::Report;
        list_reports(pp::ListReportsRequest) -> pp::ListReportsResponse;
        get_report_history(pp::GetReportHistoryRequest) -> pp::GetReportHistoryResponse;
}
