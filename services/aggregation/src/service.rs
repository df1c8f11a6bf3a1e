//! The gRPC adapter of the aggregation: each handler reads its request into a query
//! (`wire`), asks the application (`app`) and writes the answer back; every refusal
//! becomes a status in one place (`error`).

use dvk_proto::aggregation::v1::{self as pa, aggregation_service_server::AggregationService};
use dvk_runtime::Access;
use tonic::{Request, Response, Status};

use crate::app::App;
use crate::wire;

#[derive(Debug)]
pub struct Aggregation {
    pub(crate) app: App,
}

#[tonic::async_trait]
impl AggregationService for Aggregation {
    async fn get_rollup(&self, request: Request<pa::GetRollupRequest>) -> Result<Response<pa::Rollup>, Status> {
        let access = Access::of(&request)?;
        let query = wire::get_rollup(request)?;
        let rollup = self.app.rollup(&access, query).await?;
        Ok(Response::new(wire::rollup(rollup)))
    }

    async fn list_rollups(
        &self,
        request: Request<pa::ListRollupsRequest>,
    ) -> Result<Response<pa::ListRollupsResponse>, Status> {
        let access = Access::of(&request)?;
        let query = wire::list_rollups(request)?;
        let page = self.app.list_rollups(&access, query).await?;
        Ok(Response::new(wire::rollups(page)))
    }

    async fn get_time_series(
        &self,
        request: Request<pa::GetTimeSeriesRequest>,
    ) -> Result<Response<pa::GetTimeSeriesResponse>, Status> {
        let access = Access::of(&request)?;
        let query = wire::get_time_series(request.into_inner())?;
        let series = self.app.time_series(&access, query).await?;
        Ok(Response::new(wire::time_series(series)))
    }

    async fn get_completeness(
        &self,
        request: Request<pa::GetCompletenessRequest>,
    ) -> Result<Response<pa::Completeness>, Status> {
        let access = Access::of(&request)?;
        let query = wire::get_completeness(request.into_inner())?;
        let completeness = self.app.completeness(&access, query).await?;
        Ok(Response::new(wire::completeness(completeness)))
    }

    async fn get_projection_status(
        &self,
        _: Request<pa::GetProjectionStatusRequest>,
    ) -> Result<Response<pa::ProjectionStatus>, Status> {
        Ok(Response::new(wire::projection_status(self.app.status().await)))
    }

    async fn rebuild_projections(
        &self,
        request: Request<pa::RebuildProjectionsRequest>,
    ) -> Result<Response<pa::RebuildProjectionsResponse>, Status> {
        let access = Access::of(&request)?;
        Ok(Response::new(wire::rebuild(self.app.rebuild(&access).await)))
    }
}
