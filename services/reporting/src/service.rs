//! The gRPC adapter: each handler takes the access the guard granted, parses the
//! request (`wire`), asks the application (`app`) and maps its answer back; a refusal
//! becomes a `Status` in one place (`error`).

use dvk_domain::schedule::Schedule;
use dvk_proto::reporting::v1::{self as pr, reporting_service_server::ReportingService};
use dvk_runtime::Access;
use dvk_runtime::host::Core;
use tonic::{Request, Response, Status};

use crate::app::App;
use crate::state::State;
use crate::wire;

#[derive(Debug)]
pub struct Reporting {
    app: App,
}

impl Reporting {
    pub fn new(core: Core<State>, schedule: Schedule) -> Self {
        Self { app: App::new(core, schedule) }
    }
}

#[tonic::async_trait]
impl ReportingService for Reporting {
    async fn submit_report(
        &self,
        request: Request<pr::SubmitReportRequest>,
    ) -> Result<Response<pr::WriteReportResponse>, Status> {
        let access = Access::of(&request)?;
        let submit = wire::submit_report(request.into_inner())?;
        let written = self.app.submit(&access, submit).await?;
        Ok(Response::new(wire::written(written)))
    }

    async fn amend_report(
        &self,
        request: Request<pr::AmendReportRequest>,
    ) -> Result<Response<pr::WriteReportResponse>, Status> {
        let access = Access::of(&request)?;
        let change = wire::amend_report(request.into_inner())?;
        let written = self.app.change(&access, change).await?;
        Ok(Response::new(wire::written(written)))
    }

    async fn return_report(
        &self,
        request: Request<pr::ReturnReportRequest>,
    ) -> Result<Response<pr::WriteReportResponse>, Status> {
        let access = Access::of(&request)?;
        let change = wire::return_report(request.into_inner())?;
        let written = self.app.change(&access, change).await?;
        Ok(Response::new(wire::written(written)))
    }

    async fn approve_report(
        &self,
        request: Request<pr::ApproveReportRequest>,
    ) -> Result<Response<pr::WriteReportResponse>, Status> {
        let access = Access::of(&request)?;
        let change = wire::approve_report(request.into_inner())?;
        let written = self.app.change(&access, change).await?;
        Ok(Response::new(wire::written(written)))
    }

    async fn reopen_report(
        &self,
        request: Request<pr::ReopenReportRequest>,
    ) -> Result<Response<pr::WriteReportResponse>, Status> {
        let access = Access::of(&request)?;
        let change = wire::reopen_report(request.into_inner())?;
        let written = self.app.change(&access, change).await?;
        Ok(Response::new(wire::written(written)))
    }

    async fn get_report(&self, request: Request<pr::GetReportRequest>) -> Result<Response<pr::Report>, Status> {
        let access = Access::of(&request)?;
        let query = wire::get_report(request.into_inner())?;
        let report = self.app.report(&access, query).await?;
        Ok(Response::new(wire::report(report)))
    }

    async fn list_reports(
        &self,
        request: Request<pr::ListReportsRequest>,
    ) -> Result<Response<pr::ListReportsResponse>, Status> {
        let access = Access::of(&request)?;
        let query = wire::list_reports(request.into_inner())?;
        let listing = self.app.list(&access, query).await?;
        Ok(Response::new(wire::listing(listing)))
    }

    async fn get_report_history(
        &self,
        request: Request<pr::GetReportHistoryRequest>,
    ) -> Result<Response<pr::GetReportHistoryResponse>, Status> {
        let access = Access::of(&request)?;
        let query = wire::get_report_history(request.into_inner())?;
        let history = self.app.history(&access, query).await?;
        Ok(Response::new(wire::history(history)))
    }
}
