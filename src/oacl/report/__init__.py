"""oacl.report"""
